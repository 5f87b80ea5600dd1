//! HTTP/1.1 on one kept-alive connection.
//!
//! A request is encoded into a buffer the connection keeps and goes out in
//! one write. The response head is parsed by httparse straight from the
//! read buffer, and a body framed by `Content-Length` is handed out as a
//! slice of that buffer, without a copy. Nothing passes through a channel or
//! another task, so a response costs one read and one parse in the task of
//! the user waiting for it.
//!
//! Framing follows RFC 9112. Interim 1xx responses are skipped. A HEAD
//! request and a 204 or 304 response have no body. `Transfer-Encoding:
//! chunked` wins over `Content-Length`, and a response with neither ends
//! when the server closes the connection. A connection carries another
//! request only when the server did not ask to close it and the response
//! ended exactly where its framing specified.

use std::pin::Pin;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use super::{body_too_large, is_reset, Failure, RawResponse, Stream};

/// Headers a response may carry; one more fails it.
const MAX_HEADERS: usize = 100;
/// The largest response head, status line and headers together, and the
/// largest trailer section of a chunked body.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The maximum length of a chunk-size line, extensions included.
const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
/// Free room the read buffer gets before each read.
const READ_ROOM: usize = 8 * 1024;

/// The parts of a request that go on the wire.
pub(super) struct Outgoing<'a> {
    pub method: &'a Method,
    /// The origin-form request target, `/path?query`.
    pub target: &'a str,
    pub host: &'a HeaderValue,
    pub user_agent: &'a HeaderValue,
    pub accept_encoding: &'a str,
    pub authorization: Option<&'a HeaderValue>,
    /// A JSON body.
    pub body: Option<&'a Bytes>,
}

/// An open HTTP/1.1 connection and its buffers. It has no `Debug`, because
/// its output buffer contains the last request, `Authorization` header included.
pub(super) struct Http1 {
    stream: Stream,
    /// Bytes read and not yet consumed.
    input: BytesMut,
    /// The request being sent, kept for its allocation.
    output: Vec<u8>,
    /// The name and byte range in the head of each header of the response
    /// being parsed.
    spans: Vec<(HeaderName, usize, usize)>,
    /// False once the connection must not carry another request.
    reusable: bool,
}

/// The framing of a response body: where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// The body ends when the server closes the connection.
    Close,
}

/// A parsed response head, apart from its headers.
struct Head {
    length: usize,
    status: StatusCode,
    framing: Framing,
    keep_alive: bool,
}

impl Http1 {
    pub(super) fn new(stream: Stream) -> Self {
        Http1 {
            stream,
            input: BytesMut::with_capacity(READ_ROOM),
            output: Vec::with_capacity(512),
            spans: Vec::new(),
            reusable: true,
        }
    }

    /// Tells whether the connection can carry another request.
    pub(super) fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// Sends `request` and reads its whole response, its body limited to
    /// `limit` bytes.
    pub(super) async fn exchange(
        &mut self,
        request: &Outgoing<'_>,
        limit: usize,
    ) -> Result<RawResponse, Failure> {
        if !self.reusable {
            return Err(Failure::NotSent(
                "the connection cannot carry another request".into(),
            ));
        }
        self.check_idle().await?;
        self.encode(request);
        self.write_request().await?;
        let result = self.read_response(request.method, limit).await;
        if result.is_err() {
            self.reusable = false;
        }
        result
    }

    /// Fails when the server closed the connection, or sent something,
    /// while it sat idle, because a request written now would be lost. When
    /// nothing arrived, tokio's readiness state settles the read without a
    /// system call.
    async fn check_idle(&mut self) -> Result<(), Failure> {
        let idle = std::future::poll_fn(|cx| {
            if !self.input.is_empty() {
                return Poll::Ready(Err("the server sent bytes on an idle connection".into()));
            }
            self.input.reserve(READ_ROOM);
            let mut probe = ReadBuf::uninit(self.input.spare_capacity_mut());
            Poll::Ready(match Pin::new(&mut self.stream).poll_read(cx, &mut probe) {
                Poll::Pending => Ok(()),
                Poll::Ready(Ok(())) if probe.filled().is_empty() => {
                    Err("the server closed the kept-alive connection".to_string())
                }
                Poll::Ready(Ok(())) => Err("the server sent bytes on an idle connection".into()),
                Poll::Ready(Err(error)) => {
                    Err(format!("the kept-alive connection failed: {error}"))
                }
            })
        })
        .await;
        idle.map_err(|detail| {
            self.reusable = false;
            Failure::NotSent(detail)
        })
    }

    /// Writes `request` into the output buffer: the request line, the
    /// headers, and the body.
    fn encode(&mut self, request: &Outgoing<'_>) {
        let out = &mut self.output;
        out.clear();
        out.extend_from_slice(request.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(request.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(request.host.as_bytes());
        out.extend_from_slice(b"\r\nuser-agent: ");
        out.extend_from_slice(request.user_agent.as_bytes());
        out.extend_from_slice(b"\r\naccept-encoding: ");
        out.extend_from_slice(request.accept_encoding.as_bytes());
        out.extend_from_slice(b"\r\n");

        if let Some(value) = request.authorization {
            out.extend_from_slice(b"authorization: ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }

        match request.body {
            Some(body) => {
                out.extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
                out.extend_from_slice(body.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n\r\n");
                out.extend_from_slice(body);
            }
            // A method that defines a body states that it is empty.
            None if matches!(*request.method, Method::POST | Method::PUT | Method::PATCH) => {
                out.extend_from_slice(b"content-length: 0\r\n\r\n");
            }
            None => out.extend_from_slice(b"\r\n"),
        }
    }

    async fn write_request(&mut self) -> Result<(), Failure> {
        let mut written = 0;
        while written < self.output.len() {
            match self.stream.write(&self.output[written..]).await {
                Ok(0) => {
                    return Err(self.write_failure(written, "the connection closed".into()));
                }
                Ok(count) => written += count,
                Err(error) => return Err(self.write_failure(written, error.to_string())),
            }
        }
        if let Err(error) = self.stream.flush().await {
            return Err(self.write_failure(written, error.to_string()));
        }
        Ok(())
    }

    /// Builds the failure of a request that could not be written whole.
    /// When no byte was written, the server cannot have seen the request.
    fn write_failure(&mut self, written: usize, cause: String) -> Failure {
        self.reusable = false;
        let detail = format!("sending the request failed: {cause}");
        if written == 0 {
            Failure::NotSent(detail)
        } else {
            Failure::Failed {
                detail,
                before_response: true,
            }
        }
    }

    /// Reads more bytes into the input buffer. Returns false at the end of
    /// the stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        if self.input.capacity() - self.input.len() < READ_ROOM / 4 {
            self.input.reserve(READ_ROOM);
        }
        Ok(self.stream.read_buf(&mut self.input).await? > 0)
    }

    async fn read_response(
        &mut self,
        method: &Method,
        limit: usize,
    ) -> Result<RawResponse, Failure> {
        let head = loop {
            let parsed = parse_head(&self.input, &mut self.spans, method)
                .map_err(|detail| failed(detail, false))?;
            match parsed {
                Some(head) if head.length > MAX_HEAD_BYTES => return Err(head_too_large()),
                Some(head) if head.status.is_informational() => {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(failed(
                            "the server switched protocols (101), which a load request cannot use"
                                .into(),
                            false,
                        ));
                    }
                    self.input.advance(head.length);
                }
                Some(head) => break head,
                None if self.input.len() > MAX_HEAD_BYTES => return Err(head_too_large()),
                None => {
                    let nothing_yet = self.input.is_empty();
                    match self.fill().await {
                        Ok(true) => {}
                        Ok(false) if nothing_yet => {
                            return Err(failed(
                                "the connection closed before the response began".into(),
                                true,
                            ))
                        }
                        Ok(false) => {
                            return Err(failed(
                                "the connection closed in the middle of the response headers"
                                    .into(),
                                false,
                            ))
                        }
                        Err(error) => return Err(read_failure(&error, nothing_yet)),
                    }
                }
            }
        };
        self.reusable = head.keep_alive;
        let head_bytes = self.input.split_to(head.length).freeze();
        let mut headers = HeaderMap::with_capacity(self.spans.len());
        for (name, start, end) in self.spans.drain(..) {
            let value = HeaderValue::from_maybe_shared(head_bytes.slice(start..end))
                .map_err(|_| failed(format!("the {name} header has an invalid value"), false))?;
            headers.append(name, value);
        }
        let body = match head.framing {
            Framing::None => Bytes::new(),
            Framing::Length(length) => self.read_sized(length, limit).await?,
            Framing::Chunked => self.read_chunked(limit).await?,
            Framing::Close => {
                self.reusable = false;
                self.read_to_close(limit).await?
            }
        };
        // Bytes past the end of the response mean the framing was wrong.
        if !self.input.is_empty() {
            self.reusable = false;
        }
        Ok(RawResponse {
            status: head.status,
            headers,
            body,
        })
    }

    async fn read_sized(&mut self, length: u64, limit: usize) -> Result<Bytes, Failure> {
        let length = match usize::try_from(length) {
            Ok(length) if length <= limit => length,
            _ => return Err(too_large(limit)),
        };
        while self.input.len() < length {
            self.input.reserve(length - self.input.len());
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(failed(
                        format!(
                            "the connection closed after {} of the {length} body bytes",
                            self.input.len()
                        ),
                        false,
                    ))
                }
                Err(error) => return Err(read_failure(&error, false)),
            }
        }
        Ok(self.input.split_to(length).freeze())
    }

    async fn read_chunked(&mut self, limit: usize) -> Result<Bytes, Failure> {
        let mut body = BytesMut::new();
        loop {
            let size_line = self.line(MAX_CHUNK_LINE_BYTES, "chunk size line").await?;
            let size = chunk_size(&self.input[..size_line.0]).ok_or_else(|| {
                failed(
                    "the chunked body has an invalid chunk size line".into(),
                    false,
                )
            })?;
            self.input.advance(size_line.1);
            if size == 0 {
                break;
            }
            let size = match usize::try_from(size) {
                Ok(size) if body.len() + size <= limit => size,
                _ => return Err(too_large(limit)),
            };
            // The data, then its line ending: CRLF, or a bare LF as after
            // a chunk-size line.
            while self.input.len() < size + 2 && self.input.get(size) != Some(&b'\n') {
                self.need_more("a chunked body").await?;
            }
            let ending = match &self.input[size..] {
                [b'\n', ..] => 1,
                [b'\r', b'\n', ..] => 2,
                _ => {
                    return Err(failed(
                        "a chunk of the chunked body does not end with a line break".into(),
                        false,
                    ))
                }
            };
            body.extend_from_slice(&self.input[..size]);
            self.input.advance(size + ending);
        }
        // Trailer fields, up to an empty line; they are not kept.
        let mut trailers = 0;
        loop {
            let (content, taken) = self.line(MAX_HEAD_BYTES, "trailer line").await?;
            self.input.advance(taken);
            trailers += taken;
            if content == 0 {
                return Ok(body.freeze());
            }
            if trailers > MAX_HEAD_BYTES {
                return Err(failed(
                    format!(
                        "the chunked body's trailers are larger than {} KiB",
                        MAX_HEAD_BYTES / 1024
                    ),
                    false,
                ));
            }
        }
    }

    /// Waits for a whole line at the start of the input. Returns the length
    /// of its content and the length with its line ending, which may be a
    /// bare LF.
    async fn line(&mut self, max: usize, part: &str) -> Result<(usize, usize), Failure> {
        loop {
            let end = self.input.iter().position(|&byte| byte == b'\n');
            if end.unwrap_or(self.input.len()) > max {
                return Err(failed(
                    format!("a {part} of the chunked body is longer than {max} bytes"),
                    false,
                ));
            }
            if let Some(end) = end {
                let content = if end > 0 && self.input[end - 1] == b'\r' {
                    end - 1
                } else {
                    end
                };
                return Ok((content, end + 1));
            }
            self.need_more("a chunked body").await?;
        }
    }

    async fn need_more(&mut self, part: &str) -> Result<(), Failure> {
        match self.fill().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(failed(
                format!("the connection closed in the middle of {part}"),
                false,
            )),
            Err(error) => Err(read_failure(&error, false)),
        }
    }

    async fn read_to_close(&mut self, limit: usize) -> Result<Bytes, Failure> {
        loop {
            if self.input.len() > limit {
                return Err(too_large(limit));
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return Ok(self.input.split().freeze()),
                Err(error) => return Err(read_failure(&error, false)),
            }
        }
    }
}

/// Parses a response head from the start of `input`. Returns `None` until
/// it is complete. The headers' names and places go to `spans`.
fn parse_head(
    input: &[u8],
    spans: &mut Vec<(HeaderName, usize, usize)>,
    method: &Method,
) -> Result<Option<Head>, String> {
    // Left uninitialised, so that a parse does not first fill 100 empty
    // headers (3,200 bytes on a 64-bit target).
    let mut storage = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        input,
        &mut storage,
    );
    let length =
        match parsed {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(format!("the response has more than {MAX_HEADERS} headers"))
            }
            Err(_) if speaks_http2(input) => return Err(
                "the server answered in HTTP/2 on an HTTP/1.1 connection; parallax speaks HTTP/2 \
                 only over TLS, when the server picks it in the handshake"
                    .into(),
            ),
            Err(error) => return Err(format!("the response is not valid HTTP/1.1 ({error})")),
        };

    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .map_err(|_| format!("the response has the invalid status {code}"))?;
    let version_1_1 = response.version == Some(1);

    let mut length_header: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_coded = false;
    let mut close = false;
    let mut keep_alive = false;
    spans.clear();
    for header in response.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| "the response has an invalid header name".to_string())?;
        if name == http::header::CONTENT_LENGTH {
            let value = content_length(header.value)
                .ok_or_else(|| "the response has an invalid Content-Length".to_string())?;
            if length_header.is_some_and(|known| known != value) {
                return Err("the response has conflicting Content-Length headers".into());
            }
            length_header = Some(value);
        } else if name == http::header::TRANSFER_ENCODING {
            transfer_coded = true;
            // parallax sends no `TE` header, so a server may apply only
            // `chunked`, once.
            for coding in tokens(header.value) {
                if !coding.eq_ignore_ascii_case(b"chunked") {
                    let coding = String::from_utf8_lossy(&coding[..coding.len().min(40)]);
                    return Err(format!(
                        "the response uses the transfer coding {coding:?}, which parallax does not \
                         decode; only chunked is allowed, because no TE header is sent"
                    ));
                }
                if chunked {
                    return Err("the response applies the chunked transfer coding twice".into());
                }
                chunked = true;
            }
        } else if name == http::header::CONNECTION {
            for token in tokens(header.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        let start = header.value.as_ptr() as usize - input.as_ptr() as usize;
        spans.push((name, start, start + header.value.len()));
    }

    let framing = if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if transfer_coded {
        return Err("the response has an empty Transfer-Encoding header".into());
    } else {
        match length_header {
            Some(length) => Framing::Length(length),
            None => Framing::Close,
        }
    };

    // A message with both headers may have been smuggled, so RFC 9112
    // requires closing the connection after it.
    let keep_alive = !(transfer_coded && length_header.is_some())
        && if version_1_1 {
            !close
        } else {
            keep_alive && !close
        };
    Ok(Some(Head {
        length,
        status,
        framing,
        keep_alive,
    }))
}

/// Tells whether `input` starts like HTTP/2: its connection preface, or a
/// SETTINGS frame, which an HTTP/2 server sends first.
fn speaks_http2(input: &[u8]) -> bool {
    input.starts_with(b"PRI * HTTP/2")
        || input.starts_with(b"HTTP/2")
        || matches!(input, [0, _, _, 4, ..])
}

/// Reads a `Content-Length` value: digits, or a list of equal ones.
fn content_length(value: &[u8]) -> Option<u64> {
    let mut found = None;
    for item in value.split(|&byte| byte == b',') {
        let digits = item.trim_ascii();
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let number = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
        if found.is_some_and(|known| known != number) {
            return None;
        }
        found = Some(number);
    }
    found
}

/// Splits a header value into its comma-separated tokens, trimmed, and
/// leaves out empty ones.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&byte| byte == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// Reads the hexadecimal size at the start of a chunk-size line; chunk
/// extensions after `;` are ignored.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line
        .split(|&byte| byte == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

fn failed(detail: String, before_response: bool) -> Failure {
    Failure::Failed {
        detail,
        before_response,
    }
}

fn head_too_large() -> Failure {
    failed(
        format!(
            "the response headers are larger than {} KiB",
            MAX_HEAD_BYTES / 1024
        ),
        false,
    )
}

fn too_large(limit: usize) -> Failure {
    failed(body_too_large(limit), false)
}

/// Describes a read that failed. A reset before any byte of the response
/// is the mark of a kept-alive connection the server closed as the request
/// went out.
fn read_failure(error: &std::io::Error, nothing_yet: bool) -> Failure {
    failed(
        format!("reading the response failed: {error}"),
        nothing_yet && is_reset(error),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, method: Method) -> Result<Option<Head>, String> {
        parse_head(text.as_bytes(), &mut Vec::new(), &method)
    }

    fn framing(text: &str) -> (Framing, bool) {
        let head = head(text, Method::GET).unwrap().unwrap();
        (head.framing, head.keep_alive)
    }

    #[test]
    fn framing_follows_the_headers() {
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n"),
            (Framing::Length(12), true)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            (Framing::Chunked, true)
        );

        let error = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            Method::GET,
        )
        .err()
        .unwrap();
        assert!(error.contains("transfer coding \"gzip\""), "{error}");
        let error = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        )
        .err()
        .unwrap();
        assert!(error.contains("twice"), "{error}");

        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n"),
            (Framing::Close, true),
            "no length: the body ends with the connection"
        );
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
            (Framing::None, true)
        );
        assert_eq!(
            framing("HTTP/1.1 304 Not Modified\r\n\r\n"),
            (Framing::None, true)
        );

        let head = head("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD);
        assert_eq!(head.unwrap().unwrap().framing, Framing::None);
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        assert!(!framing("HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n").1);
        assert!(!framing("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").1);
        assert!(
            framing("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n").1
        );
        assert!(
            !framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n")
                .1,
            "both framings: the connection closes"
        );
    }

    #[test]
    fn content_length_lists_must_agree() {
        assert_eq!(content_length(b"42"), Some(42));
        assert_eq!(content_length(b" 42 , 42"), Some(42));
        assert_eq!(content_length(b"42, 43"), None);
        assert_eq!(content_length(b"+42"), None);
        assert_eq!(content_length(b""), None);
        assert_eq!(content_length(b"99999999999999999999"), None);
        let error = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\n",
            Method::GET,
        )
        .err()
        .unwrap();
        assert!(error.contains("conflicting Content-Length"), "{error}");
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert!(head("HTTP/1.1 200 OK\r\ncontent-le", Method::GET)
            .unwrap()
            .is_none());
        let error = head("HTTP/1.1 200 OK\r\nbad header\r\n\r\n", Method::GET)
            .err()
            .unwrap();
        assert!(error.contains("not valid HTTP/1.1"), "{error}");
        let error = head("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Method::GET)
            .err()
            .unwrap();
        assert!(error.contains("answered in HTTP/2"), "{error}");
    }

    #[test]
    fn chunk_sizes_are_hexadecimal() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"FF;name=value"), Some(255));
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"zz"), None);
        assert_eq!(chunk_size(b"+2a"), None);
        assert_eq!(chunk_size(b"2a ;x"), Some(42));
        assert_eq!(chunk_size(b"1000000000000000"), None);
    }

    #[test]
    fn header_spans_point_into_the_head() {
        let text = "HTTP/1.1 200 OK\r\nServer-Timing: app;dur=12\r\ncontent-length: 0\r\n\r\n";
        let mut spans = Vec::new();
        parse_head(text.as_bytes(), &mut spans, &Method::GET)
            .unwrap()
            .unwrap();
        let (name, start, end) = &spans[0];
        assert_eq!(name, "server-timing");
        assert_eq!(&text[*start..*end], "app;dur=12");
    }
}
