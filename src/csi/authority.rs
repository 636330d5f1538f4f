//! Serving clients that name the unix socket as the HTTP/2 `:authority`.
//!
//! Kubelets before 1.26 (kubernetes#112597) and grpc-java send the socket's
//! path (`/var/lib/kubelet/plugins/x/csi.sock`), grpcio and the other C-core
//! clients send it percent-encoded without its first slash
//! (`var%2Flib%2Fkubelet%2F...`). Neither is an authority in RFC 3986's sense,
//! and h2 (0.4.20, the newest) parses `:authority` with
//! `http::uri::Authority` and answers RST_STREAM(PROTOCOL_ERROR) when that
//! fails (`malformed authority ... invalid uri character`, or
//! `invalid authority` for the `%`): the node-driver-registrar of such a
//! kubelet then crash-loops. h2 has no option to relax it (hyperium/h2#487,
//! open since 2020), hyper and tonic have none either.
//!
//! So each accepted unix connection is read through
//! [`PathAuthorityStream`], which replaces a `:authority` that
//! `http::uri::Authority` refuses by `localhost` (what grpc-go and kubelets
//! 1.26+ send over a unix socket) before h2 sees it. Nothing else changes:
//! every frame but HEADERS/CONTINUATION passes byte for byte (so flow
//! control, padding and stream states are the client's own), and the
//! server's direction is untouched. A header block is decoded with the
//! client's HPACK state and encoded again by our own encoder without a
//! dynamic table, so h2's decoder never depends on the client's table and
//! both stay consistent. The HPACK codec is loona-hpack: the fork of the
//! `hpack` crate kept for the loona HTTP/2 server (which passes h2spec),
//! fixed for its decoder panic (CVE-2024-51502) in 0.4.3. This leaves h2
//! unforked; the alternative, vendoring h2 with the one check relaxed, would
//! have to be carried and rebased until upstream moves.
//!
//! The authority names nothing on a unix socket (the socket's permissions
//! decide who talks to us), so nothing is lost by the rewrite. The brick
//! agent's TCP clients send `host:port` and are served as they are.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// What a client that named the socket is served as.
pub const LOCAL_AUTHORITY: &[u8] = b"localhost";

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEAD_LEN: usize = 9;

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const PRIORITY_LEN: usize = 5;

/// The smallest SETTINGS_MAX_FRAME_SIZE there is: h2 takes frames of this
/// size whatever it advertised.
const FRAME_PAYLOAD_MAX: usize = 16_384;
/// Four times the header list hyper accepts (16 KiB), so h2 still answers
/// every oversized request it would have seen; past this the connection ends.
const HEADER_BLOCK_MAX: usize = 64 * 1024;
/// Decoded size (RFC 7541 §4.1: name + value + 32 per field) of one header
/// list; bounds what a small block can expand to through the table.
const HEADER_LIST_MAX: usize = 64 * 1024;
/// The client's HPACK table may be this big: the protocol default, which h2
/// keeps (neither hyper nor tonic sets SETTINGS_HEADER_TABLE_SIZE).
const CLIENT_TABLE_MAX: usize = 4_096;
/// How much one read takes from the socket.
const READ_CHUNK: usize = 16 * 1024;

/// Why a connection was ended: the client broke HTTP/2 in a way h2 would
/// also have ended the connection for, or sent a header block over the caps.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("malformed HTTP/2 header frame: {0}")]
    Malformed(&'static str),
    #[error("HPACK header block does not decode: {0:?}")]
    Hpack(loona_hpack::decoder::DecoderError),
    #[error("header block of over {HEADER_BLOCK_MAX} bytes")]
    BlockTooLarge,
    #[error("header list of over {HEADER_LIST_MAX} bytes once decoded")]
    ListTooLarge,
}

impl From<RewriteError> for io::Error {
    fn from(error: RewriteError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

#[derive(Clone, Copy, Debug)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHead {
    fn parse(bytes: &[u8]) -> FrameHead {
        FrameHead {
            len: usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            stream_id: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    fn write(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream_id: u32) {
        let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        out.extend_from_slice(&len[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream_id.to_be_bytes());
    }
}

enum Stage {
    /// Reading the client's connection preface.
    Preface,
    /// Not HTTP/2 with prior knowledge: passed on as it is, for h2 to refuse.
    Opaque,
    /// At a frame boundary.
    FrameHead,
    /// Inside a frame passed on unchanged.
    Payload { remaining: usize },
}

/// A header block being collected from HEADERS and its CONTINUATIONs.
struct OpenBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    fragment: Vec<u8>,
}

/// The client-to-server byte stream of one connection, with every header
/// block decoded and encoded again, `:authority` made acceptable to h2.
pub struct AuthorityRewriter {
    stage: Stage,
    pending: BytesMut,
    block: Option<OpenBlock>,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    rewritten: usize,
}

impl Default for AuthorityRewriter {
    fn default() -> Self {
        AuthorityRewriter::new()
    }
}

impl AuthorityRewriter {
    pub fn new() -> AuthorityRewriter {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(CLIENT_TABLE_MAX);
        let mut encoder = Encoder::new();
        // Indexes nothing, so what h2 decodes never refers to earlier blocks.
        encoder.set_max_table_size(0);
        AuthorityRewriter {
            stage: Stage::Preface,
            pending: BytesMut::new(),
            block: None,
            decoder,
            encoder,
            rewritten: 0,
        }
    }

    /// How many `:authority` values were replaced so far.
    pub fn rewritten(&self) -> usize {
        self.rewritten
    }

    /// Takes the next bytes from the client and appends what h2 is to read
    /// to `out`; bytes of an unfinished frame head or header frame wait for
    /// the next call.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        self.pending.extend_from_slice(input);
        loop {
            match self.stage {
                Stage::Opaque => {
                    out.extend_from_slice(&self.pending.split());
                    return Ok(());
                }
                Stage::Preface => {
                    let seen = self.pending.len().min(PREFACE.len());
                    if self.pending[..seen] != PREFACE[..seen] {
                        self.stage = Stage::Opaque;
                    } else if seen < PREFACE.len() {
                        return Ok(());
                    } else {
                        out.extend_from_slice(&self.pending.split_to(PREFACE.len()));
                        self.stage = Stage::FrameHead;
                    }
                }
                Stage::Payload { remaining } => {
                    let taken = remaining.min(self.pending.len());
                    out.extend_from_slice(&self.pending.split_to(taken));
                    if taken < remaining {
                        self.stage = Stage::Payload {
                            remaining: remaining - taken,
                        };
                        return Ok(());
                    }
                    self.stage = Stage::FrameHead;
                }
                Stage::FrameHead => {
                    if self.pending.len() < FRAME_HEAD_LEN {
                        return Ok(());
                    }
                    let head = FrameHead::parse(&self.pending[..FRAME_HEAD_LEN]);
                    if self.block.is_some() && head.kind != CONTINUATION {
                        return Err(RewriteError::Malformed(
                            "another frame inside a header block",
                        ));
                    }
                    match head.kind {
                        HEADERS | CONTINUATION => {
                            if head.len > HEADER_BLOCK_MAX {
                                return Err(RewriteError::BlockTooLarge);
                            }
                            if self.pending.len() < FRAME_HEAD_LEN + head.len {
                                return Ok(());
                            }
                            let frame = self.pending.split_to(FRAME_HEAD_LEN + head.len);
                            self.header_frame(head, &frame[FRAME_HEAD_LEN..], out)?;
                        }
                        PUSH_PROMISE => {
                            return Err(RewriteError::Malformed("PUSH_PROMISE from a client"));
                        }
                        _ => {
                            out.extend_from_slice(&self.pending.split_to(FRAME_HEAD_LEN));
                            self.stage = Stage::Payload {
                                remaining: head.len,
                            };
                        }
                    }
                }
            }
        }
    }

    fn header_frame(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let fragment = if head.kind == HEADERS {
            if head.stream_id == 0 {
                return Err(RewriteError::Malformed("HEADERS on stream 0"));
            }
            let mut body = payload;
            let mut padding = 0;
            if head.flags & PADDED != 0 {
                let (&length, rest) = body
                    .split_first()
                    .ok_or(RewriteError::Malformed("no padding length"))?;
                padding = usize::from(length);
                body = rest;
            }
            let mut priority = None;
            if head.flags & PRIORITY != 0 {
                let (fields, rest) = body
                    .split_first_chunk::<PRIORITY_LEN>()
                    .ok_or(RewriteError::Malformed("short priority fields"))?;
                priority = Some(*fields);
                body = rest;
            }
            let end = body
                .len()
                .checked_sub(padding)
                .ok_or(RewriteError::Malformed("padding longer than the frame"))?;
            self.block = Some(OpenBlock {
                stream_id: head.stream_id,
                end_stream: head.flags & END_STREAM != 0,
                priority,
                fragment: Vec::new(),
            });
            &body[..end]
        } else {
            payload
        };
        let Some(block) = self
            .block
            .as_mut()
            .filter(|b| b.stream_id == head.stream_id)
        else {
            return Err(RewriteError::Malformed(
                "CONTINUATION outside its header block",
            ));
        };
        if block.fragment.len() + fragment.len() > HEADER_BLOCK_MAX {
            return Err(RewriteError::BlockTooLarge);
        }
        block.fragment.extend_from_slice(fragment);
        if head.flags & END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            self.reencode(block, out)?;
        }
        Ok(())
    }

    fn reencode(&mut self, block: OpenBlock, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut list_size = 0usize;
        let mut replaced = None;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                list_size = list_size.saturating_add(name.len() + value.len() + 32);
                if list_size > HEADER_LIST_MAX {
                    return;
                }
                let value = if &*name == b":authority"
                    && http::uri::Authority::try_from(&*value).is_err()
                {
                    replaced = Some(String::from_utf8_lossy(&value).into_owned());
                    LOCAL_AUTHORITY.to_vec()
                } else {
                    value.into_owned()
                };
                fields.push((name.into_owned(), value));
            })
            .map_err(RewriteError::Hpack)?;
        if list_size > HEADER_LIST_MAX {
            return Err(RewriteError::ListTooLarge);
        }
        if let Some(authority) = replaced {
            if self.rewritten == 0 {
                tracing::debug!(
                    authority,
                    "client names the socket as :authority; served as localhost"
                );
            }
            self.rewritten += 1;
        }
        let mut encoded = Vec::new();
        self.encoder
            .encode_into(fields.iter().map(|(n, v)| (&n[..], &v[..])), &mut encoded)
            .map_err(|_| RewriteError::Malformed("unencodable header list"))?;
        write_header_frames(&block, &encoded, out);
        Ok(())
    }
}

/// HEADERS (with the client's END_STREAM and priority) and as many
/// CONTINUATIONs as `encoded` needs.
fn write_header_frames(block: &OpenBlock, encoded: &[u8], out: &mut Vec<u8>) {
    let priority: &[u8] = block.priority.as_ref().map_or(&[], |p| &p[..]);
    let (first, mut rest) = encoded.split_at(encoded.len().min(FRAME_PAYLOAD_MAX - priority.len()));
    let mut flags = 0;
    if block.end_stream {
        flags |= END_STREAM;
    }
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    FrameHead::write(
        out,
        priority.len() + first.len(),
        HEADERS,
        flags,
        block.stream_id,
    );
    out.extend_from_slice(priority);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(FRAME_PAYLOAD_MAX));
        let flags = if after.is_empty() { END_HEADERS } else { 0 };
        FrameHead::write(out, chunk.len(), CONTINUATION, flags, block.stream_id);
        out.extend_from_slice(chunk);
        rest = after;
    }
}

/// An accepted connection whose reads go through an [`AuthorityRewriter`];
/// writes go straight to the socket.
pub struct PathAuthorityStream<S> {
    inner: S,
    rewriter: AuthorityRewriter,
    ready: Vec<u8>,
    offset: usize,
    chunk: Box<[u8]>,
}

impl<S> PathAuthorityStream<S> {
    pub fn new(inner: S) -> PathAuthorityStream<S> {
        PathAuthorityStream {
            inner,
            rewriter: AuthorityRewriter::new(),
            ready: Vec::new(),
            offset: 0,
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }
}

impl<S: Connected> Connected for PathAuthorityStream<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PathAuthorityStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.offset < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.offset);
                buf.put_slice(&this.ready[this.offset..this.offset + n]);
                this.offset += n;
                if this.offset == this.ready.len() {
                    this.ready.clear();
                    this.offset = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = ReadBuf::new(&mut this.chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            if chunk.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.rewriter.push(chunk.filled(), &mut this.ready)?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PathAuthorityStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's HPACK encoder, indexing as real clients do.
    fn client_block(encoder: &mut Encoder<'static>, fields: &[(&str, &str)]) -> Vec<u8> {
        encoder.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    fn request(authority: &str) -> Vec<(&'static str, String)> {
        vec![
            (":method", "POST".into()),
            (":scheme", "http".into()),
            (":path", "/csi.v1.Identity/Probe".into()),
            (":authority", authority.into()),
            ("content-type", "application/grpc".into()),
            ("te", "trailers".into()),
        ]
    }

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameHead::write(&mut out, payload.len(), kind, flags, stream_id);
        out.extend_from_slice(payload);
        out
    }

    /// What h2 would read: frames, with each header block decoded by a
    /// decoder that lives as long as the connection, as h2's does.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Headers {
            stream_id: u32,
            end_stream: bool,
            priority: Option<Vec<u8>>,
            fields: Vec<(String, String)>,
        },
        Other(Vec<u8>),
    }

    fn read_as_h2(bytes: &[u8]) -> Vec<Seen> {
        assert_eq!(&bytes[..PREFACE.len()], PREFACE);
        let mut rest = &bytes[PREFACE.len()..];
        let mut decoder = Decoder::new();
        let mut seen = Vec::new();
        let mut block: Option<(FrameHead, Option<Vec<u8>>, Vec<u8>)> = None;
        while !rest.is_empty() {
            let head = FrameHead::parse(rest);
            let (whole, after) = rest.split_at(FRAME_HEAD_LEN + head.len);
            let payload = &whole[FRAME_HEAD_LEN..];
            rest = after;
            assert!(head.len <= FRAME_PAYLOAD_MAX);
            match head.kind {
                HEADERS => {
                    assert!(block.is_none());
                    assert_eq!(head.flags & PADDED, 0);
                    let (priority, fragment) = if head.flags & PRIORITY != 0 {
                        (Some(payload[..5].to_vec()), &payload[5..])
                    } else {
                        (None, payload)
                    };
                    block = Some((head, priority, fragment.to_vec()));
                }
                CONTINUATION => {
                    let open = block.as_mut().unwrap();
                    assert_eq!(open.0.stream_id, head.stream_id);
                    open.2.extend_from_slice(payload);
                }
                _ => {
                    assert!(block.is_none());
                    seen.push(Seen::Other(whole.to_vec()));
                }
            }
            if matches!(head.kind, HEADERS | CONTINUATION) && head.flags & END_HEADERS != 0 {
                let (first, priority, fragment) = block.take().unwrap();
                let fields = decoder
                    .decode(&fragment)
                    .unwrap()
                    .into_iter()
                    .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
                    .collect();
                seen.push(Seen::Headers {
                    stream_id: first.stream_id,
                    end_stream: first.flags & END_STREAM != 0,
                    priority,
                    fields,
                });
            }
        }
        assert!(block.is_none());
        seen
    }

    fn frame_kinds(bytes: &[u8]) -> Vec<u8> {
        let mut rest = &bytes[PREFACE.len()..];
        let mut kinds = Vec::new();
        while !rest.is_empty() {
            let head = FrameHead::parse(rest);
            kinds.push(head.kind);
            rest = &rest[FRAME_HEAD_LEN + head.len..];
        }
        kinds
    }

    fn headers(stream_id: u32, end_stream: bool, fields: &[(&str, String)]) -> Seen {
        Seen::Headers {
            stream_id,
            end_stream,
            priority: None,
            fields: fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
        }
    }

    /// Feeds `input` through a rewriter `step` bytes at a time.
    fn rewrite(input: &[u8], step: usize) -> (Vec<u8>, usize) {
        let mut rewriter = AuthorityRewriter::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            rewriter.push(piece, &mut out).unwrap();
        }
        (out, rewriter.rewritten())
    }

    fn encode(encoder: &mut Encoder<'static>, fields: &[(&'static str, String)]) -> Vec<u8> {
        let borrowed: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        client_block(encoder, &borrowed)
    }

    fn with_authority(
        fields: &[(&'static str, String)],
        authority: &str,
    ) -> Vec<(&'static str, String)> {
        fields
            .iter()
            .map(|(n, v)| {
                let v = if *n == ":authority" {
                    authority.to_string()
                } else {
                    v.clone()
                };
                (*n, v)
            })
            .collect()
    }

    #[test]
    fn socket_paths_become_localhost_across_indexed_requests_and_split_reads() {
        let raw = "/var/lib/kubelet/plugins/glusterfs.csi/csi.sock";
        let encoded = "var%2Flib%2Fkubelet%2Fplugins%2Fglusterfs.csi%2Fcsi.sock";
        for authority in [raw, encoded] {
            let mut client = Encoder::new();
            let mut input = PREFACE.to_vec();
            let settings = frame(0x4, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]);
            input.extend(&settings);
            // The second request's :authority is only an index into the
            // client's table; a DATA frame passes between them.
            let first = encode(&mut client, &request(authority));
            let second = encode(&mut client, &request(authority));
            assert!(second.len() < first.len());
            input.extend(frame(HEADERS, END_HEADERS, 1, &first));
            let data = frame(0x0, END_STREAM, 1, &[0, 0, 0, 0, 0]);
            input.extend(&data);
            input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &second));
            let expected = vec![
                Seen::Other(settings.clone()),
                headers(1, false, &with_authority(&request(authority), "localhost")),
                Seen::Other(data.clone()),
                headers(3, true, &with_authority(&request(authority), "localhost")),
            ];
            for step in [1, 7, 9, 10, input.len()] {
                let (out, rewritten) = rewrite(&input, step);
                assert_eq!(read_as_h2(&out), expected, "{authority} in steps of {step}");
                assert_eq!(rewritten, 2);
            }
        }
    }

    #[test]
    fn valid_authorities_and_other_fields_are_kept() {
        for authority in ["localhost", "127.0.0.1:4000", "[::1]:4000", "csi.example"] {
            let mut client = Encoder::new();
            let mut fields = request(authority);
            fields.push(("x-glusterfs-csi-token", "secret value".into()));
            let mut input = PREFACE.to_vec();
            input.extend(frame(
                HEADERS,
                END_HEADERS,
                1,
                &encode(&mut client, &fields),
            ));
            let (out, rewritten) = rewrite(&input, 5);
            assert_eq!(read_as_h2(&out), vec![headers(1, false, &fields)]);
            assert_eq!(rewritten, 0, "{authority}");
        }
    }

    #[test]
    fn padding_priority_and_continuations_are_read_and_a_long_block_is_split() {
        let mut client = Encoder::new();
        let mut fields = request("/run/csi/csi.sock");
        // Longer than one frame once encoded.
        fields.push(("x-long", "v".repeat(FRAME_PAYLOAD_MAX + 100)));
        let block = encode(&mut client, &fields);
        let (a, rest) = block.split_at(10);
        let (b, c) = rest.split_at(3);
        let mut first = vec![4u8]; // pad length
        first.extend([0x80, 0, 0, 1, 15]); // exclusive dependency on 1, weight 15
        first.extend(a);
        first.extend([0; 4]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 5, &first));
        input.extend(frame(CONTINUATION, 0, 5, b));
        input.extend(frame(CONTINUATION, END_HEADERS, 5, c));
        let (out, _) = rewrite(&input, 1000);
        let Seen::Headers {
            stream_id,
            end_stream,
            priority,
            fields: seen,
        } = &read_as_h2(&out)[0]
        else {
            panic!("no headers");
        };
        assert_eq!((*stream_id, *end_stream), (5, true));
        assert_eq!(priority.as_deref(), Some(&[0x80, 0, 0, 1, 15][..]));
        assert_eq!(seen[3], (":authority".into(), "localhost".into()));
        assert_eq!(seen[6].1.len(), FRAME_PAYLOAD_MAX + 100);
        // Re-encoded without padding, as a HEADERS and one CONTINUATION.
        assert_eq!(frame_kinds(&out), [HEADERS, CONTINUATION]);
    }

    #[test]
    fn anything_but_a_prior_knowledge_preface_passes_unchanged() {
        let input = b"GET / HTTP/1.1\r\nHost: /var/run/x.sock\r\n\r\n";
        assert_eq!(rewrite(input, 3).0, input);
    }

    #[test]
    fn broken_or_oversized_header_blocks_end_the_connection() {
        let mut client = Encoder::new();
        let block = encode(&mut client, &request("/x.sock"));
        let huge = encode(&mut client, &[("x-a", "a".repeat(HEADER_BLOCK_MAX))]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "HEADERS on stream 0",
                frame(HEADERS, END_HEADERS, 0, &block),
            ),
            (
                "padding longer",
                frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 1, 2]),
            ),
            (
                "short priority",
                frame(HEADERS, END_HEADERS | PRIORITY, 1, &[0, 0]),
            ),
            (
                "another frame inside",
                [frame(HEADERS, 0, 1, &block), frame(0x0, 0, 1, b"data")].concat(),
            ),
            (
                "CONTINUATION outside",
                [
                    frame(HEADERS, 0, 1, &block),
                    frame(CONTINUATION, END_HEADERS, 3, &[]),
                ]
                .concat(),
            ),
            (
                "CONTINUATION outside",
                frame(CONTINUATION, END_HEADERS, 1, &block),
            ),
            ("PUSH_PROMISE", frame(PUSH_PROMISE, END_HEADERS, 1, &block)),
            (
                "does not decode",
                frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff]),
            ),
            (
                "header block of over",
                frame(HEADERS, END_HEADERS, 1, &huge),
            ),
            (
                "header block of over",
                [
                    frame(HEADERS, 0, 1, &block),
                    frame(CONTINUATION, 0, 1, &huge[..HEADER_BLOCK_MAX - 10]),
                ]
                .concat(),
            ),
        ];
        for (expected, frames) in cases {
            let mut rewriter = AuthorityRewriter::new();
            let mut out = Vec::new();
            let mut input = PREFACE.to_vec();
            input.extend(frames);
            let error = rewriter.push(&input, &mut out).unwrap_err().to_string();
            assert!(error.contains(expected), "{expected}: {error}");
        }

        // A small block that expands through the client's table: the first
        // request indexes x-b (entry 62), the second refers to it 22 times.
        let mut rewriter = AuthorityRewriter::new();
        let mut out = Vec::new();
        let mut table = Encoder::new();
        let first = encode(&mut table, &[("x-b", "b".repeat(3000))]);
        let expanding = vec![0x80 | 62; HEADER_LIST_MAX / 3000 + 1];
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &first));
        input.extend(frame(HEADERS, END_HEADERS, 3, &expanding));
        assert!(matches!(
            rewriter.push(&input, &mut out),
            Err(RewriteError::ListTooLarge)
        ));
    }

    /// Header blocks in every representation HPACK has (indexed, literal
    /// with and without indexing, never indexed, size updates, names from
    /// either table or new), made at random but the same every run.
    struct BlockMaker(u64);

    impl BlockMaker {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }

        fn string(&mut self, out: &mut Vec<u8>, text: &str) {
            out.push(text.len() as u8);
            out.extend(text.as_bytes());
        }

        fn block(&mut self) -> Vec<u8> {
            const NAMES: [&str; 4] = [":authority", "x-token", "content-type", "te"];
            const VALUES: [&str; 6] = [
                "/var/lib/kubelet/plugins/x/csi.sock",
                "var%2Flib%2Fx.sock",
                "localhost",
                "127.0.0.1:8080",
                "",
                "trailers",
            ];
            let mut out = Vec::new();
            if self.next().is_multiple_of(8) {
                out.push(0x20 | (self.next() % 31) as u8);
            }
            for _ in 0..1 + self.next() % 6 {
                match self.next() % 5 {
                    0 => out.push(0x80 | (1 + self.next() % 70) as u8),
                    1 => {
                        out.push(0x40);
                        let name = self.pick(&NAMES);
                        self.string(&mut out, name);
                        let value = self.pick(&VALUES);
                        self.string(&mut out, value);
                    }
                    kind => {
                        // Name 1 is :authority in the static table.
                        let flag = if kind == 2 { 0x00 } else { 0x10 };
                        out.push(flag | (1 + self.next() % 14) as u8);
                        let value = self.pick(&VALUES);
                        self.string(&mut out, value);
                    }
                }
            }
            out
        }
    }

    #[test]
    fn h2_decodes_what_the_client_sent_but_a_refused_authority() {
        let mut maker = BlockMaker(0x9e37_79b9_7f4a_7c15);
        let (mut served, mut refused, mut rewritten) = (0, 0, 0);
        for _ in 0..50 {
            // One connection: the client's table carries over between
            // blocks, as does h2's.
            let mut client_side = Decoder::new();
            client_side.set_max_allowed_table_size(CLIENT_TABLE_MAX);
            let mut h2_side = Decoder::new();
            let mut rewriter = AuthorityRewriter::new();
            let mut out = Vec::new();
            rewriter.push(PREFACE, &mut out).unwrap();
            for stream in 0..40u32 {
                let block = maker.block();
                let meant = client_side.decode(&block);
                let before = out.len();
                let result = rewriter.push(
                    &frame(HEADERS, END_HEADERS, 2 * stream + 1, &block),
                    &mut out,
                );
                let Ok(meant) = meant else {
                    assert!(result.is_err(), "{block:x?}");
                    refused += 1;
                    break;
                };
                result.unwrap();
                served += 1;
                let expected: Vec<(Vec<u8>, Vec<u8>)> = meant
                    .into_iter()
                    .map(|(name, value)| {
                        if name == b":authority"
                            && http::uri::Authority::try_from(&value[..]).is_err()
                        {
                            rewritten += 1;
                            (name, LOCAL_AUTHORITY.to_vec())
                        } else {
                            (name, value)
                        }
                    })
                    .collect();
                let sent = &out[before..];
                assert_eq!(FrameHead::parse(sent).kind, HEADERS);
                let seen = h2_side.decode(&sent[FRAME_HEAD_LEN..]).unwrap();
                assert_eq!(seen, expected, "{block:x?}");
            }
        }
        // Each outcome happened often enough to have been checked.
        assert!(
            served > 200 && refused > 10 && rewritten > 50,
            "{served} {refused} {rewritten}"
        );
    }
}
