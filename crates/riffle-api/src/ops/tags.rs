//! Tags: AddTagsToStream and TagResource, RemoveTagsFromStream and UntagResource,
//! ListTagsForStream, ListTagsForResource.

use riffle_control::ControlCommand;

use super::Api;
use super::common::find_stream;
use crate::error::ApiError;
use crate::request::AddTagsInput;
use crate::request::Ctx;
use crate::request::ListTagsForResourceInput;
use crate::request::ListTagsForStreamInput;
use crate::request::RemoveTagsInput;
use crate::wire::Map;
use crate::wire::Value;

pub async fn add_tags(api: &Api, input: AddTagsInput) -> Result<Value, ApiError> {
    api.node
        .control()
        .propose(ControlCommand::AddTags {
            name: input.stream.name,
            tags: input.tags,
        })
        .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn remove_tags(api: &Api, input: RemoveTagsInput) -> Result<Value, ApiError> {
    api.node
        .control()
        .propose(ControlCommand::RemoveTags {
            name: input.stream.name,
            keys: input.keys,
        })
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
    input: ListTagsForStreamInput,
) -> Result<Value, ApiError> {
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &input.stream.name)?;
    let exclusive_start = input.exclusive_start_tag_key.as_deref();
    let remaining: Vec<_> = stream
        .tags
        .iter()
        .filter(|(key, _)| exclusive_start.is_none_or(|start| key.as_str() > start))
        .collect();
    let has_more = remaining.len() > input.limit;
    let mut output = Map::with_capacity(2);
    output.push("Tags", tag_list(remaining.into_iter().take(input.limit)));
    output.push("HasMoreTags", has_more);
    Ok(Value::Map(output))
}

pub async fn list_tags_for_resource(
    api: &Api,
    ctx: &Ctx<'_>,
    input: ListTagsForResourceInput,
) -> Result<Value, ApiError> {
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &input.stream.name)?;
    Ok(Value::Map(
        Map::new().with("Tags", tag_list(stream.tags.iter())),
    ))
}
