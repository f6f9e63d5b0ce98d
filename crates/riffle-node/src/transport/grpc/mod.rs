//! The gRPC peer transport: one lazily connected HTTP/2 channel per peer node carries every
//! group's Raft traffic and every forwarded call (tonic multiplexes them as streams), and the
//! server side hands each call to the node. Protobuf is converted to the node's typed messages
//! here ([`convert`]) and nowhere else.

mod convert;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use riffle_proto::peer as pb;
use riffle_proto::peer::peer_client::PeerClient as GrpcClient;
use riffle_proto::peer::peer_server::Peer;
use riffle_proto::peer::peer_server::PeerServer;
use riffle_raft::message as raft;
use riffle_shard::shard::ReadPage;
use riffle_types::seqnum::Position;
use tokio::sync::Semaphore;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::Request;
use tonic::Response;
use tonic::Status;
use tonic::Streaming;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use crate::error::JoinError;
use crate::node::Node;
use crate::peer::ControlAnswer;
use crate::peer::HibernateRequest;
use crate::peer::JoinRequest;
use crate::peer::PeerClient;
use crate::peer::PeerError;
use crate::peer::PeerResult;
use crate::peer::PingAnswer;
use crate::peer::RaftClient;
use crate::service::AppendRequest;
use crate::service::FollowRequest;
use crate::service::Following;
use crate::service::LocateRequest;
use crate::service::ReadRequest;
use crate::service::SealRequest;
use crate::service::Served;
use crate::service::ShardService;
use convert::AppendCall;

/// Time allowed to open a connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Time allowed for a Raft message (an election must not wait on a dead node for long).
const RAFT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for a forwarded data or control call (it may wait for a commit).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed for a ping.
const PING_TIMEOUT: Duration = Duration::from_millis(800);
/// Chunk size of a streamed snapshot.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// HTTP/2 flow-control windows: large, so that a few MiB of log entries to a peer on a fast
/// link are not throttled to one 64 KiB window per round trip.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 32 << 20;
/// Largest message accepted (a PutRecords batch is at most 10 MiB plus framing).
const MAX_MESSAGE: usize = 64 << 20;

/// AppendEntries calls to one node waiting to be sent, each with where its answer goes.
type PendingAppend = (
    pb::AppendEntriesRequest,
    oneshot::Sender<Result<raft::AppendEntriesResponse, PeerError>>,
);

/// At most this many AppendEntries batches in flight to one node; while they are, new calls
/// queue up and leave together in the next batch.
const BATCHES_IN_FLIGHT: usize = 4;
/// At most this many AppendEntries in one batch.
const BATCH_LIMIT: usize = 256;
/// An AppendEntries batch whose answer takes this long is logged (a write stall's trace: the
/// follower's disk, its runtime or the network).
const SLOW_BATCH: Duration = Duration::from_millis(250);

/// gRPC client to every other node: addresses come from the configuration and the control
/// state; channels are created on first use and reused. AppendEntries of all groups bound for
/// one node are batched.
pub struct GrpcPeers {
    me: Weak<GrpcPeers>,
    addresses: RwLock<HashMap<u64, String>>,
    channels: RwLock<HashMap<u64, (String, Channel)>>,
    batchers: Mutex<HashMap<u64, mpsc::UnboundedSender<PendingAppend>>>,
}

impl GrpcPeers {
    pub fn new(known: &[(u64, String)]) -> Arc<GrpcPeers> {
        let peers = Arc::new_cyclic(|me| GrpcPeers {
            me: me.clone(),
            addresses: RwLock::default(),
            channels: RwLock::default(),
            batchers: Mutex::default(),
        });
        peers.learn_addresses(known);
        peers
    }

    /// The queue of AppendEntries for `node`, with its sender task started on first use.
    fn batcher(&self, node: u64) -> mpsc::UnboundedSender<PendingAppend> {
        let mut batchers = match self.batchers.lock() {
            Ok(batchers) => batchers,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(sender) = batchers.get(&node)
            && !sender.is_closed()
        {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(self.me.clone(), node, receiver));
        batchers.insert(node, sender.clone());
        sender
    }

    fn client(&self, node: u64) -> Result<GrpcClient<Channel>, PeerError> {
        let address = self
            .address_of(node)
            .ok_or_else(|| PeerError::Unreachable {
                node,
                reason: "address unknown".into(),
            })?;
        if let Ok(channels) = self.channels.read()
            && let Some((known, channel)) = channels.get(&node)
            && *known == address
        {
            return Ok(configure(GrpcClient::new(channel.clone())));
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|error| PeerError::Unreachable {
                node,
                reason: format!("bad address {address}: {error}"),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(CONNECTION_WINDOW))
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        if let Ok(mut channels) = self.channels.write() {
            channels.insert(node, (address, channel.clone()));
        }
        Ok(configure(GrpcClient::new(channel)))
    }
}

fn configure(client: GrpcClient<Channel>) -> GrpcClient<Channel> {
    client
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

fn request<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Whether a failed call certainly never reached the peer's handler.
fn never_delivered(status: &Status) -> bool {
    if status.code() != Code::Unavailable {
        return false;
    }
    let text = format!("{status:?}").to_ascii_lowercase();
    text.contains("connect") || text.contains("refused") || text.contains("dns")
}

fn peer_error(node: u64, status: Status) -> PeerError {
    if never_delivered(&status) {
        PeerError::Unreachable {
            node,
            reason: status.message().to_string(),
        }
    } else {
        PeerError::Failed {
            node,
            reason: format!("{}: {}", status.code(), status.message()),
        }
    }
}

/// An answer that arrived but could not be understood: the call may have run.
fn malformed_answer(node: u64, error: convert::Malformed) -> PeerError {
    PeerError::Failed {
        node,
        reason: error.to_string(),
    }
}

/// Runs one unary call on the peer's channel.
macro_rules! unary {
    ($self:ident, $node:ident, $method:ident, $message:expr, $timeout:expr) => {{
        let client = $self.client($node);
        let message = $message;
        async move {
            let mut client = client?;
            client
                .$method(request(message, $timeout))
                .await
                .map(Response::into_inner)
                .map_err(|status| peer_error($node, status))
        }
        .boxed()
    }};
}

/// Sends the AppendEntries queued for `node` in batches, until the client is dropped.
async fn send_batches(
    peers: Weak<GrpcPeers>,
    node: u64,
    mut queue: mpsc::UnboundedReceiver<PendingAppend>,
) {
    let permits = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_LIMIT {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let Some(peers) = peers.upgrade() else { return };
        let client = peers.client(node);
        drop(peers);
        tokio::spawn(async move {
            let _permit = permit;
            let (requests, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let entries = requests.len();
            let started = std::time::Instant::now();
            let outcome = match client {
                Ok(mut client) => client
                    .append_entries_batch(request(
                        pb::AppendEntriesBatchRequest { requests },
                        RAFT_TIMEOUT,
                    ))
                    .await
                    .map(Response::into_inner)
                    .map_err(|status| peer_error(node, status)),
                Err(error) => Err(error),
            };
            let took = started.elapsed();
            if took >= SLOW_BATCH {
                tracing::warn!(
                    node,
                    entries,
                    took_ms = took.as_millis() as u64,
                    ok = outcome.is_ok(),
                    "slow AppendEntries batch"
                );
            }
            match outcome {
                Ok(response) if response.responses.len() == answers.len() => {
                    for (answer, response) in answers.into_iter().zip(response.responses) {
                        let response = convert::append_entries_response_from_pb(response)
                            .map_err(|error| malformed_answer(node, error));
                        let _ = answer.send(response);
                    }
                }
                Ok(response) => {
                    let error = PeerError::Failed {
                        node,
                        reason: format!(
                            "{} answers to {} AppendEntries",
                            response.responses.len(),
                            answers.len()
                        ),
                    };
                    for answer in answers {
                        let _ = answer.send(Err(error.clone()));
                    }
                }
                Err(error) => {
                    for answer in answers {
                        let _ = answer.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

impl RaftClient for GrpcPeers {
    fn append_entries(
        &self,
        node: u64,
        request: raft::AppendEntriesRequest,
    ) -> BoxFuture<'static, Result<raft::AppendEntriesResponse, PeerError>> {
        let (answer, receiver) = oneshot::channel();
        let request = convert::append_entries_request_to_pb(request);
        let queued = self.batcher(node).send((request, answer));
        async move {
            if queued.is_err() {
                return Err(PeerError::Unreachable {
                    node,
                    reason: "batcher stopped".into(),
                });
            }
            receiver.await.unwrap_or_else(|_| {
                Err(PeerError::Failed {
                    node,
                    reason: "batch dropped".into(),
                })
            })
        }
        .boxed()
    }

    fn vote(
        &self,
        node: u64,
        request: raft::VoteRequest,
    ) -> BoxFuture<'static, Result<raft::VoteResponse, PeerError>> {
        let call = unary!(
            self,
            node,
            vote,
            convert::vote_request_to_pb(request),
            RAFT_TIMEOUT
        );
        async move {
            convert::vote_response_from_pb(call.await?)
                .map_err(|error| malformed_answer(node, error))
        }
        .boxed()
    }

    fn transfer_leader(
        &self,
        node: u64,
        request: raft::TransferLeaderRequest,
    ) -> BoxFuture<'static, Result<raft::TransferLeaderResponse, PeerError>> {
        let call = unary!(
            self,
            node,
            transfer_leader,
            convert::transfer_request_to_pb(request),
            RAFT_TIMEOUT
        );
        async move { Ok(convert::transfer_response_from_pb(call.await?)) }.boxed()
    }

    fn install_snapshot(
        &self,
        node: u64,
        snapshot: raft::InstallSnapshotRequest,
    ) -> BoxFuture<'static, Result<raft::SnapshotResponse, PeerError>> {
        let client = self.client(node);
        async move {
            let mut client = client?;
            let mut chunks = vec![pb::SnapshotChunk {
                chunk: Some(pb::snapshot_chunk::Chunk::Meta(
                    convert::snapshot_meta_to_pb(&snapshot),
                )),
            }];
            for piece in snapshot.data.chunks(SNAPSHOT_CHUNK) {
                chunks.push(pb::SnapshotChunk {
                    chunk: Some(pb::snapshot_chunk::Chunk::Data(
                        bytes::Bytes::copy_from_slice(piece),
                    )),
                });
            }
            let stream = futures_util::stream::iter(chunks);
            let response = client
                .install_snapshot(request(stream, Duration::from_secs(300)))
                .await
                .map(Response::into_inner)
                .map_err(|status| peer_error(node, status))?;
            convert::snapshot_response_from_pb(response)
                .map_err(|error| malformed_answer(node, error))
        }
        .boxed()
    }
}

impl PeerClient for GrpcPeers {
    fn append(&self, node: u64, request: AppendRequest) -> PeerResult<Served<u64>> {
        let request = convert::append_request_to_pb(request);
        let call = unary!(self, node, append, request, FORWARD_TIMEOUT);
        async move { Ok(convert::append_response_from_pb(call.await?)) }.boxed()
    }

    fn seal(&self, node: u64, request: SealRequest) -> PeerResult<Served<u64>> {
        let request = convert::seal_request_to_pb(request);
        let call = unary!(self, node, append, request, FORWARD_TIMEOUT);
        async move { Ok(convert::append_response_from_pb(call.await?)) }.boxed()
    }

    fn read(&self, node: u64, request: ReadRequest) -> PeerResult<Served<ReadPage>> {
        let request = convert::read_request_to_pb(request);
        let call = unary!(self, node, read, request, FORWARD_TIMEOUT);
        async move { Ok(convert::read_response_from_pb(call.await?)) }.boxed()
    }

    fn locate(&self, node: u64, request: LocateRequest) -> PeerResult<Served<Position>> {
        let request = convert::locate_request_to_pb(request);
        let call = unary!(self, node, locate, request, FORWARD_TIMEOUT);
        async move { Ok(convert::locate_response_from_pb(call.await?)) }.boxed()
    }

    fn follow(&self, node: u64, request: FollowRequest) -> PeerResult<Served<Following>> {
        let client = self.client(node);
        let request = convert::follow_request_to_pb(request);
        async move {
            // No deadline: the stream lasts as long as the subscription (the caller watches
            // the node's liveness instead).
            let mut stream = client?
                .follow(Request::new(request))
                .await
                .map_err(|status| peer_error(node, status))?
                .into_inner();
            // The first message accepts or refuses the subscription.
            let first = match stream.next().await {
                Some(Ok(first)) => first,
                Some(Err(status)) => return Err(peer_error(node, status)),
                None => {
                    return Err(PeerError::Failed {
                        node,
                        reason: "follow stream ended before it was accepted".into(),
                    });
                }
            };
            let tip = match convert::read_response_from_pb(first) {
                Ok(accepted) => accepted.tip,
                Err(refusal) => return Ok(Err(refusal)),
            };
            // A transport error ends the stream: the subscribing node resumes it.
            let pages = stream
                .take_while(|message| futures_util::future::ready(message.is_ok()))
                .filter_map(|message| {
                    futures_util::future::ready(message.ok().map(convert::read_response_from_pb))
                })
                .boxed();
            Ok(Ok(Following { tip, pages }))
        }
        .boxed()
    }

    fn propose(&self, node: u64, command: Bytes) -> PeerResult<ControlAnswer<(Bytes, u64)>> {
        let request = pb::ProposeRequest { command };
        let call = unary!(self, node, propose, request, FORWARD_TIMEOUT);
        async move { Ok(convert::propose_response_from_pb(call.await?)) }.boxed()
    }

    fn read_index(&self, node: u64) -> PeerResult<ControlAnswer<u64>> {
        let call = unary!(
            self,
            node,
            read_index,
            pb::ReadIndexRequest {},
            FORWARD_TIMEOUT
        );
        async move { Ok(convert::read_index_response_from_pb(call.await?)) }.boxed()
    }

    fn ping(&self, node: u64, from_node: u64) -> PeerResult<PingAnswer> {
        let call = unary!(
            self,
            node,
            ping,
            pb::PingRequest { from_node },
            PING_TIMEOUT
        );
        async move { Ok(convert::ping_answer_from_pb(call.await?)) }.boxed()
    }

    fn hibernate(&self, node: u64, request: HibernateRequest) -> PeerResult<bool> {
        let request = convert::hibernate_request_to_pb(request);
        let call = unary!(self, node, hibernate, request, RAFT_TIMEOUT);
        async move { Ok(call.await?.hibernating) }.boxed()
    }

    fn join(&self, node: u64, request: JoinRequest) -> PeerResult<Result<(), JoinError>> {
        let request = convert::join_request_to_pb(request);
        let call = unary!(self, node, join, request, FORWARD_TIMEOUT);
        async move { Ok(convert::join_response_from_pb(call.await?)) }.boxed()
    }

    fn address_of(&self, node: u64) -> Option<String> {
        self.addresses.read().ok()?.get(&node).cloned()
    }

    fn learn_addresses(&self, nodes: &[(u64, String)]) {
        let Ok(mut addresses) = self.addresses.write() else {
            return;
        };
        for (node, address) in nodes {
            if !address.is_empty() && addresses.get(node) != Some(address) {
                addresses.insert(*node, address.clone());
            }
        }
    }
}

/// The server side: every call is handed to the node.
pub struct PeerService {
    node: Arc<Node>,
}

impl PeerService {
    pub fn new(node: Arc<Node>) -> PeerServer<PeerService> {
        PeerServer::new(PeerService { node })
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        Ok(Response::new(
            serve_append_entries(&self.node, request.into_inner()).await,
        ))
    }

    async fn append_entries_batch(
        &self,
        request: Request<pb::AppendEntriesBatchRequest>,
    ) -> Result<Response<pb::AppendEntriesBatchResponse>, Status> {
        let calls = request
            .into_inner()
            .requests
            .into_iter()
            .map(|request| serve_append_entries(&self.node, request));
        let responses = futures_util::future::join_all(calls).await;
        Ok(Response::new(pb::AppendEntriesBatchResponse { responses }))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let response = match convert::vote_request_from_pb(request.into_inner()) {
            Ok(request) => self.node.serve_vote(request).await,
            Err(error) => raft::VoteResponse::Unavailable(format!("undecodable vote: {error}")),
        };
        Ok(Response::new(convert::vote_response_to_pb(response)))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let response = match convert::transfer_request_from_pb(request.into_inner()) {
            Ok(request) => self.node.serve_transfer_leader(request).await,
            Err(error) => raft::TransferLeaderResponse::Unavailable(error.to_string()),
        };
        Ok(Response::new(convert::transfer_response_to_pb(response)))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let Some(pb::snapshot_chunk::Chunk::Meta(meta)) = first.chunk else {
            return Err(Status::invalid_argument(
                "a snapshot stream must start with its metadata",
            ));
        };
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk?.chunk {
                Some(pb::snapshot_chunk::Chunk::Data(bytes)) => data.extend_from_slice(&bytes),
                _ => {
                    return Err(Status::invalid_argument(
                        "snapshot metadata after the first message",
                    ));
                }
            }
        }
        let response = match convert::snapshot_request_from_pb(meta, data) {
            Ok(request) => self.node.serve_install_snapshot(request).await,
            Err(error) => raft::SnapshotResponse::Unavailable(error.to_string()),
        };
        Ok(Response::new(convert::snapshot_response_to_pb(response)))
    }

    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let shards = self.node.shards();
        let served = match convert::append_call_from_pb(request.into_inner()) {
            AppendCall::Records(request) => shards.append(request).await,
            AppendCall::Seal(request) => shards.seal(request).await,
        };
        Ok(Response::new(convert::append_response_to_pb(served)))
    }

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let request = convert::read_request_from_pb(request.into_inner());
        let served = self.node.shards().read(request).await;
        Ok(Response::new(convert::read_response_to_pb(served)))
    }

    async fn locate(
        &self,
        request: Request<pb::LocateRequest>,
    ) -> Result<Response<pb::LocateResponse>, Status> {
        let request = convert::locate_request_from_pb(request.into_inner());
        let served = self.node.shards().locate(request).await;
        Ok(Response::new(convert::locate_response_to_pb(served)))
    }

    type FollowStream = futures_util::stream::BoxStream<'static, Result<pb::ReadResponse, Status>>;

    /// The first message accepts the subscription (no records) or refuses it (and ends the
    /// stream); each later one is a page, until a refusal or the end of a closed shard.
    async fn follow(
        &self,
        request: Request<pb::FollowRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let request = convert::follow_request_from_pb(request.into_inner());
        let from = request.from;
        let stream = match self.node.shards().follow(request).await {
            Ok(following) => {
                let accepted = convert::follow_accepted_to_pb(from, following.tip);
                let pages = following.pages.map(convert::read_response_to_pb);
                futures_util::stream::once(async move { accepted })
                    .chain(pages)
                    .map(Ok)
                    .boxed()
            }
            Err(refusal) => {
                let refused = convert::read_response_to_pb(Err(refusal));
                futures_util::stream::once(async move { Ok(refused) }).boxed()
            }
        };
        Ok(Response::new(stream))
    }

    async fn propose(
        &self,
        request: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::ProposeResponse>, Status> {
        let served = self.node.serve_propose(request.into_inner().command).await;
        Ok(Response::new(convert::propose_response_to_pb(served)))
    }

    async fn read_index(
        &self,
        _request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        let served = self.node.serve_read_index().await;
        Ok(Response::new(convert::read_index_response_to_pb(served)))
    }

    async fn ping(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        let answer = self.node.serve_ping(request.into_inner().from_node);
        Ok(Response::new(convert::ping_answer_to_pb(answer)))
    }

    async fn hibernate(
        &self,
        request: Request<pb::HibernateRequest>,
    ) -> Result<Response<pb::HibernateResponse>, Status> {
        let hibernating = match convert::hibernate_request_from_pb(request.into_inner()) {
            Ok(request) => self.node.serve_hibernate(request),
            Err(_) => false,
        };
        Ok(Response::new(pb::HibernateResponse { hibernating }))
    }

    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let request = convert::join_request_from_pb(request.into_inner());
        let answer = self.node.serve_join(request).await;
        Ok(Response::new(convert::join_response_to_pb(answer)))
    }
}

/// One AppendEntries of a batch (or on its own), converted at the edge.
async fn serve_append_entries(
    node: &Node,
    request: pb::AppendEntriesRequest,
) -> pb::AppendEntriesResponse {
    let response = match convert::append_entries_request_from_pb(request) {
        Ok(request) => node.serve_append_entries(request).await,
        Err(error) => {
            raft::AppendEntriesResponse::Unavailable(format!("undecodable append-entries: {error}"))
        }
    };
    convert::append_entries_response_to_pb(response)
}

/// Serves the peer protocol on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Arc<Node>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tokio_stream_listener(listener);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .add_service(PeerService::new(node))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Accepted connections of `listener` as the stream tonic wants.
fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((accepted, listener))
    })
}

/// Binds the peer listener (so the address is known before the node starts).
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}
