//! Stream and consumer ARNs.

use std::fmt;

use crate::ids::{is_valid_consumer_name, is_valid_stream_name};

/// Length of an AWS account id.
const ACCOUNT_DIGITS: usize = 12;

/// `arn:{partition}:kinesis:{region}:{account}:stream/{stream_name}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamArn {
    /// `aws`, `aws-cn`, `aws-us-gov`, ...
    pub partition: String,
    /// The region the cluster answers as.
    pub region: String,
    /// 12-digit account id.
    pub account: String,
    /// The stream's name.
    pub stream_name: String,
}

impl StreamArn {
    /// Parses a stream ARN. Accepts what the model's pattern
    /// `arn:aws.*:kinesis:.*:\d{12}:stream/\S+` accepts, narrowed to a valid stream name and
    /// to partition and region fields without colons (true of every real partition and region).
    pub fn parse(text: &str) -> Option<StreamArn> {
        let (stream_arn, rest) = parse_stream_arn_prefix(text)?;
        rest.is_empty().then_some(stream_arn)
    }
}

impl fmt::Display for StreamArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:kinesis:{}:{}:stream/{}",
            self.partition, self.region, self.account, self.stream_name
        )
    }
}

/// `{stream ARN}/consumer/{consumer_name}:{creation_epoch_secs}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConsumerArn {
    /// The stream the consumer is registered with.
    pub stream: StreamArn,
    /// The consumer's name.
    pub consumer_name: String,
    /// When the consumer was registered, epoch seconds; tells apart consumers re-registered
    /// under the same name.
    pub creation_epoch_secs: u64,
}

impl ConsumerArn {
    /// Parses a consumer ARN; the stream part follows [`StreamArn::parse`].
    pub fn parse(text: &str) -> Option<ConsumerArn> {
        let (stream, rest) = parse_stream_arn_prefix(text)?;
        let consumer = rest.strip_prefix("/consumer/")?;
        let (consumer_name, secs) = consumer.rsplit_once(':')?;
        if !is_valid_consumer_name(consumer_name) || !is_all_digits(secs) {
            return None;
        }
        let creation_epoch_secs = secs.parse().ok()?;
        Some(ConsumerArn {
            stream,
            consumer_name: consumer_name.to_string(),
            creation_epoch_secs,
        })
    }
}

impl fmt::Display for ConsumerArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/consumer/{}:{}",
            self.stream, self.consumer_name, self.creation_epoch_secs
        )
    }
}

fn is_all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// Parses a stream ARN at the start of `text` and returns what follows the stream name. A
/// stream name cannot contain `/`, so the name ends at the first `/` after `stream/`.
fn parse_stream_arn_prefix(text: &str) -> Option<(StreamArn, &str)> {
    let rest = text.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    if !partition.starts_with("aws") {
        return None;
    }
    let rest = rest.strip_prefix("kinesis:")?;
    let (region, rest) = rest.split_once(':')?;
    let (account, rest) = rest.split_once(':')?;
    if account.len() != ACCOUNT_DIGITS || !is_all_digits(account) {
        return None;
    }
    let rest = rest.strip_prefix("stream/")?;
    let name_end = rest.find('/').unwrap_or(rest.len());
    let (stream_name, after_name) = rest.split_at(name_end);
    if !is_valid_stream_name(stream_name) {
        return None;
    }
    let stream_arn = StreamArn {
        partition: partition.to_string(),
        region: region.to_string(),
        account: account.to_string(),
        stream_name: stream_name.to_string(),
    };
    Some((stream_arn, after_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn orders() -> StreamArn {
        StreamArn {
            partition: "aws".to_string(),
            region: "us-east-1".to_string(),
            account: "123456789012".to_string(),
            stream_name: "orders".to_string(),
        }
    }

    #[test]
    fn stream_arn_formats_and_parses() {
        let text = "arn:aws:kinesis:us-east-1:123456789012:stream/orders";
        assert_eq!(orders().to_string(), text);
        assert_eq!(StreamArn::parse(text), Some(orders()));
        let china =
            StreamArn::parse("arn:aws-cn:kinesis:cn-north-1:000000000000:stream/a.b-c_d").unwrap();
        assert_eq!(china.partition, "aws-cn");
        assert_eq!(china.region, "cn-north-1");
        assert_eq!(china.account, "000000000000");
        assert_eq!(china.stream_name, "a.b-c_d");
    }

    #[test]
    fn stream_arn_rejects_near_misses() {
        for text in [
            "",
            "arn:aws:kinesis:us-east-1:123456789012:stream/",
            "arn:aws:kinesis:us-east-1:12345678901:stream/orders",
            "arn:aws:kinesis:us-east-1:1234567890123:stream/orders",
            "arn:aws:kinesis:us-east-1:12345678901x:stream/orders",
            "arn:gcp:kinesis:us-east-1:123456789012:stream/orders",
            "arn:aws:sqs:us-east-1:123456789012:stream/orders",
            "arn:aws:kinesis:us-east-1:123456789012:table/orders",
            "arn:aws:kinesis:us-east-1:123456789012:stream/or ders",
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/c:1",
            "aws:kinesis:us-east-1:123456789012:stream/orders",
        ] {
            assert_eq!(StreamArn::parse(text), None, "{text:?}");
        }
        let too_long = format!(
            "arn:aws:kinesis:us-east-1:123456789012:stream/{}",
            "x".repeat(129)
        );
        assert_eq!(StreamArn::parse(&too_long), None);
    }

    #[test]
    fn consumer_arn_formats_and_parses() {
        let text =
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/billing:1700000000";
        let consumer = ConsumerArn {
            stream: orders(),
            consumer_name: "billing".to_string(),
            creation_epoch_secs: 1_700_000_000,
        };
        assert_eq!(consumer.to_string(), text);
        assert_eq!(ConsumerArn::parse(text), Some(consumer));
    }

    #[test]
    fn consumer_arn_rejects_near_misses() {
        for text in [
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders",
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/billing",
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/billing:",
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/billing:-1",
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/billing:1x",
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/:1",
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/bad name:1",
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumers/billing:1",
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/billing:99999999999999999999",
        ] {
            assert_eq!(ConsumerArn::parse(text), None, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn arns_round_trip(
            partition in "aws(-[a-z]{1,6})?",
            region in "[a-z]{2}-[a-z]{1,9}-[0-9]",
            account in "[0-9]{12}",
            stream_name in "[a-zA-Z0-9_.-]{1,128}",
            consumer_name in "[a-zA-Z0-9_.-]{1,128}",
            creation_epoch_secs in any::<u64>(),
        ) {
            let stream = StreamArn { partition, region, account, stream_name };
            prop_assert_eq!(StreamArn::parse(&stream.to_string()), Some(stream.clone()));
            let consumer = ConsumerArn { stream, consumer_name, creation_epoch_secs };
            prop_assert_eq!(ConsumerArn::parse(&consumer.to_string()), Some(consumer.clone()));
            prop_assert_eq!(StreamArn::parse(&consumer.to_string()), None);
        }

        #[test]
        fn parse_never_panics(text in ".{0,200}") {
            let _ = StreamArn::parse(&text);
            let _ = ConsumerArn::parse(&text);
        }
    }
}
