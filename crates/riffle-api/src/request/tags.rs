//! Inputs of the tag operations: AddTagsToStream, RemoveTagsFromStream, ListTagsForStream,
//! TagResource, UntagResource, ListTagsForResource.

use std::collections::BTreeMap;

use riffle_types::KinesisError;
use riffle_types::StreamArn;
use riffle_types::ValidationErrors;
use riffle_types::limits;

use super::Ctx;
use super::members::StreamRef;
use super::members::bounded_int;
use super::members::check_stream_arn;
use super::members::quoted;
use super::members::required_stream;
use crate::wire::Map;

/// AddTagsToStream, and TagResource (whose `ResourceARN` names a stream).
#[derive(Clone, Debug, PartialEq)]
pub struct AddTagsInput {
    pub stream: StreamRef,
    pub tags: BTreeMap<String, String>,
}

/// RemoveTagsFromStream, and UntagResource.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoveTagsInput {
    pub stream: StreamRef,
    pub keys: Vec<String>,
}

/// ListTagsForStream.
#[derive(Clone, Debug, PartialEq)]
pub struct ListTagsForStreamInput {
    pub stream: StreamRef,
    /// List the tags whose keys sort after this one.
    pub exclusive_start_tag_key: Option<String>,
    pub limit: usize,
}

/// ListTagsForResource.
#[derive(Clone, Debug, PartialEq)]
pub struct ListTagsForResourceInput {
    pub stream: StreamRef,
}

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

/// The stream a `ResourceARN` names. A consumer ARN does not satisfy the stream ARN pattern,
/// so tags are only on streams for now.
fn resource_stream(
    ctx: &Ctx<'_>,
    input: &Map,
    errors: &mut ValidationErrors,
) -> Result<StreamRef, KinesisError> {
    let arn = input.string("ResourceARN")?;
    if arn.is_none() {
        errors.push("null", "resourceARN", "Member must not be null");
        return Ok(StreamRef::default());
    }
    check_stream_arn(errors, "resourceARN", arn);
    if !errors.is_empty() {
        return Ok(StreamRef::default());
    }
    let parsed = arn
        .and_then(StreamArn::parse)
        .ok_or_else(|| KinesisError::invalid_argument("Invalid ResourceARN."))?;
    if parsed.account != ctx.account || parsed.region != ctx.region {
        return Err(ctx.stream_not_found(&parsed.stream_name));
    }
    Ok(StreamRef {
        name: parsed.stream_name,
        given_arn: arn.map(str::to_string),
    })
}

pub fn add_tags_to_stream(ctx: &Ctx<'_>, input: &Map) -> Result<AddTagsInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    let tags = required_tags(&mut errors, input)?;
    errors.into_result()?;
    Ok(AddTagsInput { stream, tags })
}

pub fn remove_tags_from_stream(
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<RemoveTagsInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    let keys = read_tag_keys(&mut errors, input, "tagKeys")?;
    errors.into_result()?;
    Ok(RemoveTagsInput { stream, keys })
}

pub fn list_tags_for_stream(
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<ListTagsForStreamInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    let exclusive_start = input.string("ExclusiveStartTagKey")?;
    let limit = bounded_int(&mut errors, input, "Limit", "limit", 1, 50)?;
    errors.into_result()?;
    Ok(ListTagsForStreamInput {
        stream,
        exclusive_start_tag_key: exclusive_start.map(str::to_string),
        limit: limit.unwrap_or(50) as usize,
    })
}

pub fn tag_resource(ctx: &Ctx<'_>, input: &Map) -> Result<AddTagsInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = resource_stream(ctx, input, &mut errors)?;
    let tags = required_tags(&mut errors, input)?;
    errors.into_result()?;
    Ok(AddTagsInput { stream, tags })
}

pub fn untag_resource(ctx: &Ctx<'_>, input: &Map) -> Result<RemoveTagsInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = resource_stream(ctx, input, &mut errors)?;
    let keys = read_tag_keys(&mut errors, input, "tagKeys")?;
    errors.into_result()?;
    Ok(RemoveTagsInput { stream, keys })
}

pub fn list_tags_for_resource(
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<ListTagsForResourceInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = resource_stream(ctx, input, &mut errors)?;
    errors.into_result()?;
    Ok(ListTagsForResourceInput { stream })
}
