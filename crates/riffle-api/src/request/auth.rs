//! What a request asks permission for: its IAM action and the ARNs of the resources it touches,
//! as the next layer (SigV4 identity, IAM policies, audit) authorizes them.
//!
//! Kinesis actions and resource types follow AWS's Service Authorization Reference for Kinesis
//! Data Streams (service prefix `kinesis`): an action whose resource-types column is empty
//! (ListStreams, DescribeLimits, UpdateShardCount, UpdateStreamMode) is granted on `*` only;
//! CreateStream with `Tags` also needs `kinesis:AddTagsToStream` on the new stream.
//!
//! The lease operations are Riffle's own: service prefix `riffle`, the action is the operation
//! name without its `Riffle` prefix (`riffle:TakeLease`), and the resource is the application's
//! lease table, `arn:aws:riffle:{region}:{account}:lease-table/{ApplicationName}`;
//! RiffleSyncLeases also reads the stream's shards, so it names the stream too.

use std::borrow::Cow;
use std::fmt;

use super::Ctx;
use super::Request;
use super::consumers::ConsumerRef;

/// An IAM action, `service:Name` (`kinesis:PutRecords`, `riffle:TakeLease`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Action(pub(super) &'static str);

impl Action {
    /// `service:Name`.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The service prefix: `kinesis` or `riffle`.
    pub fn service(self) -> &'static str {
        self.0
            .split_once(':')
            .map_or(self.0, |(service, _)| service)
    }

    /// The action's name within its service.
    pub fn name(self) -> &'static str {
        self.0.split_once(':').map_or(self.0, |(_, name)| name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A resource a request touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// The action has no resource type: a policy grants it with `"Resource": "*"`.
    Any,
    /// A stream: its StreamARN as given, else `arn:aws:kinesis:{region}:{account}:stream/{name}`.
    Stream(String),
    /// A consumer, by the ConsumerARN the request gave.
    Consumer(String),
    /// A consumer named by StreamARN and ConsumerName. Its full ARN ends in `:{registration
    /// time}`, which the metadata holds and the request does not: an authorizer matching
    /// policies on consumer ARNs completes it from the registered consumer.
    NamedConsumer { stream_arn: String, name: String },
    /// An application's lease table (Riffle's lease operations).
    LeaseTable(String),
}

impl Resource {
    /// The ARN (`*` for [`Resource::Any`]; for [`Resource::NamedConsumer`] the consumer ARN
    /// without its registration time).
    pub fn arn(&self) -> Cow<'_, str> {
        match self {
            Resource::Any => Cow::Borrowed("*"),
            Resource::Stream(arn) | Resource::Consumer(arn) | Resource::LeaseTable(arn) => {
                Cow::Borrowed(arn)
            }
            Resource::NamedConsumer { stream_arn, name } => {
                Cow::Owned(format!("{stream_arn}/consumer/{name}"))
            }
        }
    }
}

/// One thing to authorize: `action` on `resource`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    pub action: Action,
    pub resource: Resource,
}

fn consumer_resource(consumer: &ConsumerRef, ctx: &Ctx<'_>) -> Resource {
    match &consumer.given_arn {
        Some(arn) => Resource::Consumer(arn.clone()),
        None => Resource::NamedConsumer {
            stream_arn: consumer.stream.arn(ctx),
            name: consumer.name.clone(),
        },
    }
}

impl Request {
    /// The IAM action this request needs.
    pub fn action(&self) -> Action {
        self.operation().action()
    }

    /// The resources this request touches, each needing [`Request::action`]. `ctx` gives the
    /// region and account that streams named by name live in.
    pub fn resources(&self, ctx: &Ctx<'_>) -> Vec<Resource> {
        let stream = |arn: String| vec![Resource::Stream(arn)];
        match self {
            Request::CreateStream(input) => stream(input.stream.arn(ctx)),
            Request::DeleteStream(input) => stream(input.stream.arn(ctx)),
            Request::DescribeStream(input) => stream(input.stream.arn(ctx)),
            Request::DescribeStreamSummary(input) => stream(input.stream.arn(ctx)),
            Request::ListShards(input) => stream(input.stream.arn(ctx)),
            Request::SplitShard(input) => stream(input.stream.arn(ctx)),
            Request::MergeShards(input) => stream(input.stream.arn(ctx)),
            Request::PutRecord(input) => stream(input.stream.arn(ctx)),
            Request::PutRecords(input) => stream(input.stream.arn(ctx)),
            Request::GetShardIterator(input) => stream(input.stream.arn(ctx)),
            Request::GetRecords(input) => stream(ctx.stream_arn(&input.iterator.stream_name)),
            Request::IncreaseStreamRetentionPeriod(input)
            | Request::DecreaseStreamRetentionPeriod(input) => stream(input.stream.arn(ctx)),
            Request::AddTagsToStream(input) | Request::TagResource(input) => {
                stream(input.stream.arn(ctx))
            }
            Request::RemoveTagsFromStream(input) | Request::UntagResource(input) => {
                stream(input.stream.arn(ctx))
            }
            Request::ListTagsForStream(input) => stream(input.stream.arn(ctx)),
            Request::ListTagsForResource(input) => stream(input.stream.arn(ctx)),
            Request::RegisterStreamConsumer(input) => stream(input.stream.arn(ctx)),
            Request::ListStreamConsumers(input) => stream(input.stream.arn(ctx)),
            Request::DescribeStreamConsumer(input) | Request::DeregisterStreamConsumer(input) => {
                vec![consumer_resource(&input.consumer, ctx)]
            }
            Request::SubscribeToShard(input) => vec![consumer_resource(&input.consumer, ctx)],
            Request::ListStreams(_)
            | Request::DescribeLimits(_)
            | Request::UpdateShardCount(_)
            | Request::UpdateStreamMode(_) => vec![Resource::Any],
            Request::RiffleSyncLeases(input) => vec![
                Resource::LeaseTable(ctx.lease_table_arn(&input.application)),
                Resource::Stream(ctx.stream_arn(&input.stream)),
            ],
            Request::RiffleListLeases(input) | Request::RiffleDeleteLeases(input) => {
                vec![Resource::LeaseTable(
                    ctx.lease_table_arn(&input.application),
                )]
            }
            Request::RiffleTakeLease(input) => {
                vec![Resource::LeaseTable(
                    ctx.lease_table_arn(&input.application),
                )]
            }
            Request::RiffleRenewLeases(input) => {
                vec![Resource::LeaseTable(
                    ctx.lease_table_arn(&input.application),
                )]
            }
            Request::RiffleCheckpoint(input) => {
                vec![Resource::LeaseTable(
                    ctx.lease_table_arn(&input.application),
                )]
            }
            Request::RiffleReleaseLease(input) => {
                vec![Resource::LeaseTable(
                    ctx.lease_table_arn(&input.application),
                )]
            }
        }
    }

    /// Everything to allow for this request to proceed: its action on each of its resources,
    /// then the actions it depends on (CreateStream with tags also tags the stream).
    pub fn permissions(&self, ctx: &Ctx<'_>) -> Vec<Permission> {
        let action = self.action();
        let mut permissions: Vec<Permission> = self
            .resources(ctx)
            .into_iter()
            .map(|resource| Permission { action, resource })
            .collect();
        if let Request::CreateStream(input) = self
            && !input.tags.is_empty()
        {
            permissions.push(Permission {
                action: Action("kinesis:AddTagsToStream"),
                resource: Resource::Stream(input.stream.arn(ctx)),
            });
        }
        permissions
    }
}
