//! Checks shared by the operations' decoders: how a request names its stream, and the model's
//! constraints on names, ARNs, shard ids and integer ranges, with AWS's messages.
//!
//! A check either records a violation in the caller's [`ValidationErrors`] (reported together,
//! as one ValidationException) or returns at once with the error AWS answers first
//! (a SerializationException for a wrong wire type, InvalidArgument or ResourceNotFound for a
//! StreamARN that cannot be this cluster's). The order of the calls in each decoder is the order
//! in which AWS's errors win.

use riffle_types::KinesisError;
use riffle_types::StreamArn;
use riffle_types::ValidationErrors;
use riffle_types::is_valid_stream_name;

use super::Ctx;
use crate::wire::Map;

/// The stream a request names by `StreamName`, `StreamARN` or both (which must agree).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamRef {
    /// The stream's name.
    pub name: String,
    /// The `StreamARN` as the request gave it; `None` when it named the stream by name only.
    pub given_arn: Option<String>,
}

impl StreamRef {
    /// A stream named by name only.
    pub fn named(name: impl Into<String>) -> StreamRef {
        StreamRef {
            name: name.into(),
            given_arn: None,
        }
    }

    /// The stream's ARN: as given, else built from the name in this node's region and account.
    pub fn arn(&self, ctx: &Ctx<'_>) -> String {
        match &self.given_arn {
            Some(arn) => arn.clone(),
            None => ctx.stream_arn(&self.name),
        }
    }
}

/// Quotes a string value the way AWS validation messages do.
pub fn quoted(text: &str) -> String {
    format!("'{text}'")
}

/// Validates a stream name member (when present).
pub fn check_stream_name(errors: &mut ValidationErrors, member: &str, name: Option<&str>) {
    let Some(name) = name else { return };
    if name.is_empty() {
        errors.push(
            &quoted(name),
            member,
            "Member must have length greater than or equal to 1",
        );
    } else if name.chars().count() > 128 {
        errors.push(
            &quoted(name),
            member,
            "Member must have length less than or equal to 128",
        );
    } else if !is_valid_stream_name(name) {
        errors.push(
            &quoted(name),
            member,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        );
    }
}

/// Validates a StreamARN member (when present).
pub fn check_stream_arn(errors: &mut ValidationErrors, member: &str, arn: Option<&str>) {
    let Some(arn) = arn else { return };
    if arn.is_empty() || arn.len() > 2048 {
        errors.push(
            &quoted(arn),
            member,
            "Member must have length between 1 and 2048",
        );
    } else if StreamArn::parse(arn).is_none() {
        errors.push(
            &quoted(arn),
            member,
            "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
        );
    }
}

/// The stream a request names by `StreamName`, `StreamARN` or both (which must agree).
/// Validation errors are added to `errors` and reported by the caller; then the result is
/// `None`, as it is when neither member is present.
pub fn stream_identity(
    ctx: &Ctx<'_>,
    input: &Map,
    errors: &mut ValidationErrors,
) -> Result<Option<StreamRef>, KinesisError> {
    let name = input.string("StreamName")?;
    let arn = input.string("StreamARN")?;
    check_stream_name(errors, "streamName", name);
    check_stream_arn(errors, "streamARN", arn);
    if !errors.is_empty() {
        return Ok(None);
    }
    let from_arn = match arn.and_then(StreamArn::parse) {
        Some(parsed) => {
            if parsed.account != ctx.account || parsed.region != ctx.region {
                return Err(KinesisError::not_found(format!(
                    "Stream {} under account {} not found.",
                    parsed.stream_name, parsed.account
                )));
            }
            Some(parsed.stream_name)
        }
        None => None,
    };
    let given_arn = arn.map(str::to_string);
    match (name, from_arn) {
        (Some(name), Some(from_arn)) if name != from_arn => {
            Err(KinesisError::invalid_argument(format!(
                "StreamARN {} does not match StreamName {name}.",
                arn.unwrap_or_default()
            )))
        }
        (Some(name), _) => Ok(Some(StreamRef {
            name: name.to_string(),
            given_arn,
        })),
        (None, Some(from_arn)) => Ok(Some(StreamRef {
            name: from_arn,
            given_arn,
        })),
        (None, None) => Ok(None),
    }
}

/// Like [`stream_identity`] but the stream is required. While `errors` holds violations the
/// result is a placeholder the caller never uses (it reports the violations first).
pub fn required_stream(
    ctx: &Ctx<'_>,
    input: &Map,
    errors: &mut ValidationErrors,
) -> Result<StreamRef, KinesisError> {
    match stream_identity(ctx, input, errors)? {
        Some(stream) => Ok(stream),
        None if !errors.is_empty() => Ok(StreamRef::default()),
        None => Err(KinesisError::invalid_argument(
            "Either StreamName or StreamARN must be provided.",
        )),
    }
}

/// Validates a shard id member's shape (pattern and length, as the model says).
pub fn check_shard_id(
    errors: &mut ValidationErrors,
    member: &str,
    shard_id: Option<&str>,
    required: bool,
) {
    match shard_id {
        None if required => errors.push("null", member, "Member must not be null"),
        None => {}
        Some(id) if id.is_empty() || id.len() > 128 => errors.push(
            &quoted(id),
            member,
            "Member must have length between 1 and 128",
        ),
        Some(id) if !is_valid_stream_name(id) => errors.push(
            &quoted(id),
            member,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ),
        Some(_) => {}
    }
}

/// An integer member within `[min, max]`, with AWS's messages.
pub fn bounded_int(
    errors: &mut ValidationErrors,
    input: &Map,
    key: &str,
    member: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, KinesisError> {
    let value = input.int(key)?;
    if let Some(value) = value {
        if value < min {
            errors.push(
                &value.to_string(),
                member,
                &format!("Member must have value greater than or equal to {min}"),
            );
        } else if value > max {
            errors.push(
                &value.to_string(),
                member,
                &format!("Member must have value less than or equal to {max}"),
            );
        }
    }
    Ok(value)
}

/// Checks a sequence-number member against the model's pattern `0|([1-9]\d{0,128})`.
pub fn check_sequence_number_pattern(
    errors: &mut ValidationErrors,
    member: &str,
    text: Option<&str>,
) {
    let Some(text) = text else { return };
    let well_formed = text == "0"
        || (!text.starts_with('0')
            && !text.is_empty()
            && text.len() <= 129
            && text.bytes().all(|byte| byte.is_ascii_digit()));
    if !well_formed {
        errors.push(
            &quoted(text),
            member,
            "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
        );
    }
}
