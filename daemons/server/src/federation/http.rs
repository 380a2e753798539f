//! The little HTTP/1.1 a bundle endpoint needs: one `GET`, one answer, the connection closed.
//! Parsing only (pure); the sockets are in [`super::endpoint`] and [`super::fetch`].

/// The largest request head the endpoint reads, and the largest response head the client
/// reads.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most headers either side parses.
const MAX_HEADERS: usize = 32;

/// What the endpoint makes of a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// More bytes are needed.
    Partial,
    /// `GET` of this path (query dropped).
    Get(String),
    /// Another method.
    OtherMethod,
    /// Not an HTTP/1.x request.
    Malformed,
}

/// Parses a request head.
pub fn parse_request(buf: &[u8]) -> Request {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Request::Partial,
        Ok(httparse::Status::Complete(_)) => match (req.method, req.path) {
            (Some("GET"), Some(path)) => {
                let path = path.split(['?', '#']).next().unwrap_or_default();
                Request::Get(path.to_string())
            }
            _ => Request::OtherMethod,
        },
        Err(_) => Request::Malformed,
    }
}

/// A complete response that closes the connection.
pub fn response(status: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The `GET` request the client sends.
pub fn get_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\
         User-Agent: trustdeck-server\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Why a response cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not HTTP/1.x, or a body framing that does not add up.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The body is larger than allowed.
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Parses a response read so far; `eof` when the peer has closed. `Ok(None)` while more is
/// needed: the head is incomplete, the body is shorter than its `Content-Length` or its last
/// chunk, or (without either) the peer has not closed yet.
pub fn parse_response(
    buf: &[u8],
    max_body: usize,
    eof: bool,
) -> Result<Option<Response>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    };
    let status = resp.code.unwrap_or_default();
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &buf[head_len..];
    let body = if header("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        dechunk(rest, max_body)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ResponseError::Malformed(format!("Content-Length {len:?}")))?;
        if len > max_body {
            return Err(ResponseError::TooLarge(max_body));
        }
        rest.get(..len).map(<[u8]>::to_vec)
    } else {
        eof.then(|| rest.to_vec())
    };
    match body {
        Some(body) if body.len() > max_body => Err(ResponseError::TooLarge(max_body)),
        Some(body) => Ok(Some(Response { status, body })),
        None => Ok(None),
    }
}

/// Decodes a chunked body (extensions and trailers ignored); `Ok(None)` while incomplete.
fn dechunk(mut rest: &[u8], max_body: usize) -> Result<Option<Vec<u8>>, ResponseError> {
    let malformed = |what: &str| ResponseError::Malformed(format!("chunked body: {what}"));
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|_| malformed("size"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| malformed("size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if body.len().saturating_add(size) > max_body {
            return Err(ResponseError::TooLarge(max_body));
        }
        let Some(chunk) = rest.get(..size) else {
            return Ok(None);
        };
        body.extend_from_slice(chunk);
        rest = &rest[size..];
        if rest.len() < 2 {
            return Ok(None);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| malformed("no CRLF after a chunk"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Request::Partial
        );
        assert_eq!(
            parse_request(b"GET /?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Get("/".into())
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
            Request::OtherMethod
        );
        assert_eq!(
            parse_request(b"\x16\x03\x01 hello\r\n\r\n"),
            Request::Malformed
        );
    }

    #[test]
    fn responses_by_length_chunks_or_close() {
        let r = response(200, "OK", "application/json", b"{\"keys\":[]}");
        let whole = Some(Response {
            status: 200,
            body: b"{\"keys\":[]}".to_vec(),
        });
        assert_eq!(parse_response(&r, 100, false), Ok(whole.clone()));
        assert_eq!(parse_response(&r, 100, true), Ok(whole));
        assert_eq!(parse_response(&r[..20], 100, false), Ok(None));
        assert_eq!(parse_response(&r[..r.len() - 1], 100, false), Ok(None));
        assert_eq!(
            parse_response(&r, 5, false),
            Err(ResponseError::TooLarge(5))
        );
        let chunked: &[u8] =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"ke\r\n3;x=y\r\nys\"\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked, 100, false)
                .expect("ok")
                .expect("whole")
                .body,
            b"{\"keys\"".to_vec()
        );
        for cut in 40..chunked.len() - 4 {
            assert_eq!(
                parse_response(&chunked[..cut], 100, false),
                Ok(None),
                "{cut}"
            );
        }
        assert_eq!(
            parse_response(chunked, 5, false),
            Err(ResponseError::TooLarge(5))
        );
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n";
        assert!(matches!(
            parse_response(bad, 100, false),
            Err(ResponseError::Malformed(_))
        ));
        let close = b"HTTP/1.0 404 Not Found\r\n\r\nnope";
        assert_eq!(parse_response(close, 100, false), Ok(None));
        assert_eq!(
            parse_response(close, 100, true),
            Ok(Some(Response {
                status: 404,
                body: b"nope".to_vec()
            }))
        );
    }
}
