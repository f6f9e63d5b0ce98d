//! Tags: AddTagsToStream, RemoveTagsFromStream, ListTagsForStream, TagResource, UntagResource,
//! ListTagsForResource.

use std::collections::BTreeMap;

use riffle_control::ControlCommand;
use riffle_types::KinesisError;
use riffle_types::StreamArn;
use riffle_types::ValidationErrors;
use riffle_types::limits;

use super::Api;
use super::common::Ctx;
use super::common::bounded_int;
use super::common::check_stream_arn;
use super::common::find_stream;
use super::common::quoted;
use super::common::required_stream;
use crate::wire::Map;
use crate::wire::Value;

/// Reads a `Tags` map (`{key: value}`), validating lengths.
pub fn read_tag_map(
    errors: &mut ValidationErrors,
    tags: &Map,
    member: &str,
) -> Result<BTreeMap<String, String>, KinesisError> {
    if tags.is_empty() || tags.len() > 200 {
        errors.push(
            &format!("{{{} entries}}", tags.len()),
            member,
            "Member must have length between 1 and 200",
        );
    }
    let mut out = BTreeMap::new();
    for (key, value) in tags.iter() {
        let value = value.string()?.unwrap_or_default();
        check_tag_key(errors, member, key);
        if value.chars().count() > limits::MAX_TAG_VALUE_CHARS {
            errors.push(&quoted(value), member, "Map value must satisfy constraint: [Member must have length less than or equal to 256]");
        }
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

fn check_tag_key(errors: &mut ValidationErrors, member: &str, key: &str) {
    let length = key.chars().count();
    if length == 0 || length > limits::MAX_TAG_KEY_CHARS {
        errors.push(
            &quoted(key),
            member,
            "Map keys must satisfy constraint: [Member must have length between 1 and 128]",
        );
    }
}

/// Reads the required `Tags` member.
fn required_tags(
    errors: &mut ValidationErrors,
    input: &Map,
) -> Result<BTreeMap<String, String>, KinesisError> {
    match input.map("Tags")? {
        Some(tags) => read_tag_map(errors, tags, "tags"),
        None => {
            errors.push("null", "tags", "Member must not be null");
            Ok(BTreeMap::new())
        }
    }
}

/// Reads a `TagKeys` list.
fn read_tag_keys(
    errors: &mut ValidationErrors,
    input: &Map,
    member: &str,
) -> Result<Vec<String>, KinesisError> {
    let Some(keys) = input.array("TagKeys")? else {
        errors.push("null", member, "Member must not be null");
        return Ok(Vec::new());
    };
    if keys.is_empty() || keys.len() > 50 {
        errors.push(
            &format!("[{} keys]", keys.len()),
            member,
            "Member must have length between 1 and 50",
        );
    }
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let key = key.string()?.unwrap_or_default();
        let length = key.chars().count();
        if length == 0 || length > limits::MAX_TAG_KEY_CHARS {
            errors.push(
                &quoted(key),
                member,
                "Member must have length between 1 and 128",
            );
        }
        out.push(key.to_string());
    }
    Ok(out)
}

pub async fn add_tags_to_stream(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = required_stream(ctx, input, &mut errors)?;
    let tags = required_tags(&mut errors, input)?;
    errors.into_result()?;
    api.node
        .control()
        .propose(ControlCommand::AddTags { name, tags })
        .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn remove_tags_from_stream(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = required_stream(ctx, input, &mut errors)?;
    let keys = read_tag_keys(&mut errors, input, "tagKeys")?;
    errors.into_result()?;
    api.node
        .control()
        .propose(ControlCommand::RemoveTags { name, keys })
        .await?;
    Ok(Value::Map(Map::new()))
}

fn tag_list<'a>(tags: impl Iterator<Item = (&'a String, &'a String)>) -> Value {
    Value::Array(
        tags.map(|(key, value)| {
            Value::Map(
                Map::new()
                    .with("Key", key.as_str())
                    .with("Value", value.as_str()),
            )
        })
        .collect(),
    )
}

pub async fn list_tags_for_stream(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = required_stream(ctx, input, &mut errors)?;
    let exclusive_start = input.string("ExclusiveStartTagKey")?;
    let limit = bounded_int(&mut errors, input, "Limit", "limit", 1, 50)?;
    errors.into_result()?;
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &name)?;
    let limit = limit.unwrap_or(50) as usize;
    let remaining: Vec<_> = stream
        .tags
        .iter()
        .filter(|(key, _)| exclusive_start.is_none_or(|start| key.as_str() > start))
        .collect();
    let has_more = remaining.len() > limit;
    let mut output = Map::with_capacity(2);
    output.push("Tags", tag_list(remaining.into_iter().take(limit)));
    output.push("HasMoreTags", has_more);
    Ok(Value::Map(output))
}

/// The stream a `ResourceARN` names.
fn resource_stream(
    ctx: &Ctx<'_>,
    input: &Map,
    errors: &mut ValidationErrors,
) -> Result<String, KinesisError> {
    let arn = input.string("ResourceARN")?;
    if arn.is_none() {
        errors.push("null", "resourceARN", "Member must not be null");
        return Ok(String::new());
    }
    check_stream_arn(errors, "resourceARN", arn);
    if !errors.is_empty() {
        return Ok(String::new());
    }
    let parsed = arn
        .and_then(StreamArn::parse)
        .ok_or_else(|| KinesisError::invalid_argument("Invalid ResourceARN."))?;
    if parsed.account != ctx.account || parsed.region != ctx.region {
        return Err(ctx.stream_not_found(&parsed.stream_name));
    }
    Ok(parsed.stream_name)
}

pub async fn tag_resource(api: &Api, ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = resource_stream(ctx, input, &mut errors)?;
    let tags = required_tags(&mut errors, input)?;
    errors.into_result()?;
    api.node
        .control()
        .propose(ControlCommand::AddTags { name, tags })
        .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn untag_resource(api: &Api, ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = resource_stream(ctx, input, &mut errors)?;
    let keys = read_tag_keys(&mut errors, input, "tagKeys")?;
    errors.into_result()?;
    api.node
        .control()
        .propose(ControlCommand::RemoveTags { name, keys })
        .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn list_tags_for_resource(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = resource_stream(ctx, input, &mut errors)?;
    errors.into_result()?;
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &name)?;
    Ok(Value::Map(
        Map::new().with("Tags", tag_list(stream.tags.iter())),
    ))
}
