//! Clients that send the unix socket's path as the HTTP/2 `:authority` are
//! served: kubelets 1.20-1.25 and grpc-java send it raw, grpcio and the other
//! C-core clients percent-encoded. The real client here is grpcio
//! (tests/helpers/grpc_path_authority.py; `pip install grpcio`), against our
//! real `csi::serve`. The brick agent's TCP clients send `host:port`, which
//! needs nothing: checked with the same client.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use glusterfs_csi::bricks::agent::{AgentToken, BrickRootsSeen};
use glusterfs_csi::cli::GlusterdArgs;
use glusterfs_csi::csi::{self, Services, identity::IdentityService};
use glusterfs_csi::proto::csi::identity_client::IdentityClient;
use glusterfs_csi::proto::csi::{GetPluginInfoRequest, GetPluginInfoResponse, ProbeResponse};
use glusterfs_csi::wiring;
use prost::Message;
use tokio::sync::oneshot;

const CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/helpers/grpc_path_authority.py"
);
const DRIVER_NAME: &str = "glusterfs.csi.example.com";
/// Far above a normal run (about a second), only there to end a hung client.
const CLIENT_LIMIT: Duration = Duration::from_secs(90);

/// One call the Python client made.
#[derive(Debug, serde::Deserialize)]
struct Call {
    method: String,
    code: String,
    details: String,
    response: String,
}

impl Call {
    fn response<M: Message + Default>(&self) -> M {
        assert_eq!(self.code, "OK", "{self:?}");
        let bytes: Vec<u8> = (0..self.response.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&self.response[i..i + 2], 16).unwrap())
            .collect();
        M::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Runs the grpcio client; it is killed (by its handle) if it outlives
/// [`CLIENT_LIMIT`] or the test fails first.
async fn grpcio(target: &str, authority: Option<&str>, methods: &[&str]) -> Vec<Call> {
    let mut command = tokio::process::Command::new("python3");
    command.arg(CLIENT).arg(target);
    if let Some(authority) = authority {
        command.arg("--authority").arg(authority);
    }
    let child = command
        .args(methods)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let output = tokio::time::timeout(CLIENT_LIMIT, child.wait_with_output())
        .await
        .expect("the grpcio client finishes")
        .unwrap();
    assert!(
        output.status.success(),
        "{CLIENT} failed (pip install grpcio?):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let calls: Vec<Call> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(
        calls.iter().map(|c| c.method.as_str()).collect::<Vec<_>>(),
        methods
    );
    calls
}

/// The Identity service over our `csi::serve` on a socket at a kubelet-like
/// path; stops when dropped.
struct CsiSocket {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl CsiSocket {
    fn serve() -> CsiSocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("plugins/{DRIVER_NAME}/csi.sock"));
        let listener = csi::bind_socket(&path).unwrap();
        let services = Services {
            identity: IdentityService::new(DRIVER_NAME.to_string(), None, None),
            controller: None,
            node: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(csi::serve(listener, services, async {
            let _ = stopped.await;
        }));
        CsiSocket {
            path,
            stop: Some(stop),
            _dir: dir,
        }
    }

    fn target(&self) -> String {
        format!("unix:{}", self.path.display())
    }
}

impl Drop for CsiSocket {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

const GET_PLUGIN_INFO: &str = "/csi.v1.Identity/GetPluginInfo";
const PROBE: &str = "/csi.v1.Identity/Probe";
const CAPABILITIES: &str = "/csi.v1.Identity/GetPluginCapabilities";

/// Several calls on one connection, so later requests refer to header
/// fields the client's HPACK encoder indexed in earlier ones.
const IDENTITY_CALLS: [&str; 5] = [
    GET_PLUGIN_INFO,
    PROBE,
    CAPABILITIES,
    GET_PLUGIN_INFO,
    "/csi.v1.Identity/NoSuchMethod",
];

fn assert_identity_answers(calls: &[Call]) {
    for info in [&calls[0], &calls[3]] {
        let info: GetPluginInfoResponse = info.response();
        assert_eq!(info.name, DRIVER_NAME);
        assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    }
    let probe: ProbeResponse = calls[1].response();
    assert_eq!(probe.ready, Some(true));
    assert_eq!(calls[2].code, "OK", "{:?}", calls[2]);
    // The server's own answers still come through unchanged.
    assert_eq!(calls[4].code, "UNIMPLEMENTED", "{:?}", calls[4]);
}

#[tokio::test]
async fn grpcio_sending_the_percent_encoded_socket_path_is_served() {
    let socket = CsiSocket::serve();
    let calls = grpcio(&socket.target(), None, &IDENTITY_CALLS).await;
    assert_identity_answers(&calls);
}

#[tokio::test]
async fn a_raw_socket_path_as_authority_is_served_as_kubelets_before_1_26_send_it() {
    let socket = CsiSocket::serve();
    let path = socket.path.to_str().unwrap().to_string();
    let calls = grpcio(&socket.target(), Some(&path), &IDENTITY_CALLS).await;
    assert_identity_answers(&calls);
}

#[tokio::test]
async fn a_valid_authority_and_our_own_tonic_client_are_served_as_before() {
    let socket = CsiSocket::serve();
    let calls = grpcio(&socket.target(), Some("localhost"), &IDENTITY_CALLS).await;
    assert_identity_answers(&calls);

    let mut identity = IdentityClient::new(common::connect(&socket.path).await);
    for _ in 0..2 {
        let info = identity
            .get_plugin_info(GetPluginInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.name, DRIVER_NAME);
    }
}

#[tokio::test]
async fn the_brick_agent_over_tcp_serves_grpcio_as_it_is() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    // Never reached: the token is checked before glusterd is asked anything.
    let glusterd = GlusterdArgs {
        glusterd_socket: dir.path().join("glusterd.socket"),
        gluster_cli: PathBuf::from("gluster"),
        gluster_timeout_seconds: 5,
    };
    let token = AgentToken::require(Some("agent-token"), "test").unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        wiring::serve_brick_agent(
            listener,
            &glusterd,
            token,
            BrickRootsSeen::Directly,
            async {
                let _ = stopped.await;
            },
        )
        .await
        .map_err(|e| e.to_string())
    });

    let method = "/glusterfs_csi.brick.v1.BrickAgent/CheckBrickRoot";
    let calls = grpcio(&format!("127.0.0.1:{port}"), None, &[method]).await;
    // The request reached the service (h2 refusing its headers would have
    // been INTERNAL, "RST_STREAM ... PROTOCOL_ERROR").
    assert_eq!(calls[0].code, "UNAUTHENTICATED", "{:?}", calls[0]);
    assert_eq!(calls[0].details, "missing or wrong brick agent token");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A request of frames made by hand, in the shapes a client may choose and
/// the rewriting must carry over for h2: padding, priority, the block split
/// over CONTINUATIONs, the raw path as `:authority`.
#[tokio::test]
async fn h2_serves_a_rewritten_request_with_padding_priority_and_continuations() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream_id.to_be_bytes());
        out.extend(payload);
        out
    }
    const HEADERS: u8 = 0x1;
    const CONTINUATION: u8 = 0x9;
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;

    let socket = CsiSocket::serve();
    let path = socket.path.to_str().unwrap().to_string();
    let block = loona_hpack::Encoder::new().encode([
        (&b":method"[..], &b"POST"[..]),
        (b":scheme", b"http"),
        (b":path", GET_PLUGIN_INFO.as_bytes()),
        (b":authority", path.as_bytes()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]);
    let (a, rest) = block.split_at(7);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut first = vec![3]; // padding length
    first.extend([0, 0, 0, 0, 200]); // priority: no dependency, weight 200
    first.extend(a);
    first.extend([0, 0, 0]);
    let mut request = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    request.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    request.extend(frame(HEADERS, 0x8 | 0x20, 1, &first));
    request.extend(frame(CONTINUATION, 0, 1, b));
    request.extend(frame(CONTINUATION, END_HEADERS, 1, c));
    // One gRPC message: uncompressed, zero bytes long (an empty request).
    request.extend(frame(0x0, END_STREAM, 1, &[0, 0, 0, 0, 0]));

    let mut stream = tokio::net::UnixStream::connect(&socket.path).await.unwrap();
    stream.write_all(&request).await.unwrap();

    // Reads the server's frames until stream 1 ends.
    let mut decoder = loona_hpack::Decoder::new();
    let mut fields = Vec::new();
    let mut message = Vec::new();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            stream.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; len];
            stream.read_exact(&mut payload).await.unwrap();
            let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
            match (head[3], stream_id) {
                // The filter decodes with the client's table as big as the
                // protocol default: the server must not allow a bigger one.
                (0x4, 0) => {
                    for setting in payload.chunks(6) {
                        let id = u16::from_be_bytes([setting[0], setting[1]]);
                        let value =
                            u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                        assert!(
                            id != 0x1 || value <= 4096,
                            "SETTINGS_HEADER_TABLE_SIZE {value}"
                        );
                    }
                }
                (0x3, 1) => panic!("RST_STREAM {payload:?}"),
                (0x7, _) => panic!("GOAWAY {payload:?}"),
                (HEADERS, 1) => fields.extend(decoder.decode(&payload).unwrap()),
                (0x0, 1) => message.extend(payload),
                _ => {}
            }
            if stream_id == 1 && head[4] & END_STREAM != 0 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the server answers");
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(field(":status").as_deref(), Some("200"), "{fields:?}");
    assert_eq!(field("grpc-status").as_deref(), Some("0"), "{fields:?}");
    let info = GetPluginInfoResponse::decode(&message[5..]).unwrap();
    assert_eq!(info.name, DRIVER_NAME);
}
