//! Server-Sent Events framing (WHATWG HTML, "event stream interpretation"),
//! incremental so a stream can be rewritten chunk by chunk as it passes.
//!
//! Unlike a browser's EventSource this parser keeps what a proxy needs to
//! re-emit the stream faithfully: comments (keep-alives), events without data
//! (priming events: an `id` and an empty `data`), and `retry`.

/// One parsed item of an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    /// A `:` comment line, without the colon (keep-alives).
    Comment(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    /// `data` lines joined with `\n`; `None` if the event had no data field.
    pub data: Option<String>,
    pub retry: Option<u64>,
}

impl Event {
    pub fn data(data: String) -> Self {
        Event {
            data: Some(data),
            ..Default::default()
        }
    }

    /// The event type, `message` when absent.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    /// Serialise in canonical form (LF line endings).
    pub fn write(&self, out: &mut Vec<u8>) {
        if let Some(id) = &self.id {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(sanitize_line(id).as_bytes());
            out.push(b'\n');
        }
        if let Some(ev) = &self.event {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(sanitize_line(ev).as_bytes());
            out.push(b'\n');
        }
        if let Some(r) = self.retry {
            out.extend_from_slice(b"retry: ");
            out.extend_from_slice(r.to_string().as_bytes());
            out.push(b'\n');
        }
        if let Some(data) = &self.data {
            for line in data.split('\n') {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
                out.push(b'\n');
            }
        }
        out.push(b'\n');
    }
}

impl Item {
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Item::Event(e) => e.write(out),
            Item::Comment(c) => {
                out.push(b':');
                out.extend_from_slice(sanitize_line(c).as_bytes());
                out.push(b'\n');
                out.push(b'\n');
            }
        }
    }
}

/// Single-line fields cannot carry line breaks (or NUL in ids).
fn sanitize_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b == b'\n' || b == b'\r' || b == 0) {
        std::borrow::Cow::Owned(s.replace(['\n', '\r', '\0'], ""))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// An event grew beyond the configured limit.
    TooLarge(usize),
    /// The stream is not UTF-8.
    Utf8,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::TooLarge(n) => write!(f, "SSE event larger than {n} bytes"),
            SseError::Utf8 => f.write_str("SSE stream is not UTF-8"),
        }
    }
}

/// Incremental parser: `feed` bytes as they arrive, collect items.
#[derive(Debug)]
pub struct Parser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended in CR: a leading LF of the next one belongs to it.
    pending_cr: bool,
    bom_checked: bool,
    head: Vec<u8>,
    cur: Event,
    cur_has_field: bool,
    /// Bytes accounted to the current event (for the size limit).
    cur_size: usize,
    max_event: usize,
}

impl Parser {
    pub fn new(max_event: usize) -> Self {
        Parser {
            line: Vec::new(),
            pending_cr: false,
            bom_checked: false,
            head: Vec::new(),
            cur: Event::default(),
            cur_has_field: false,
            cur_size: 0,
            max_event,
        }
    }

    /// Bytes held back waiting for the rest of an event.
    pub fn buffered(&self) -> usize {
        self.cur_size + self.line.len()
    }

    /// Feed a chunk; complete items are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Item>) -> Result<(), SseError> {
        if self.bom_checked {
            return self.feed_lines(chunk, out);
        }
        // A leading BOM is dropped; it may itself arrive split across chunks.
        self.head.extend_from_slice(chunk);
        if self.head.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.head) {
            return Ok(());
        }
        self.bom_checked = true;
        let head = std::mem::take(&mut self.head);
        self.feed_lines(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head), out)
    }

    fn feed_lines(&mut self, chunk: &[u8], out: &mut Vec<Item>) -> Result<(), SseError> {
        let mut rest = chunk;
        if rest.is_empty() {
            return Ok(());
        }
        if self.pending_cr {
            self.pending_cr = false;
            if let Some(r) = rest.strip_prefix(b"\n") {
                rest = r;
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (head, tail) = rest.split_at(pos);
            let is_cr = tail.first() == Some(&b'\r');
            let mut after = tail.get(1..).unwrap_or(&[]);
            if is_cr {
                match after.first() {
                    Some(b'\n') => after = after.get(1..).unwrap_or(&[]),
                    None => self.pending_cr = true,
                    _ => {}
                }
            }
            if self.line.is_empty() {
                self.process_line(head, out)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.process_line(&line, out)?;
            }
            rest = after;
        }
        self.line.extend_from_slice(rest);
        if self.cur_size + self.line.len() > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<Item>) -> Result<(), SseError> {
        self.cur_size += line.len() + 1;
        if self.cur_size > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        if line.is_empty() {
            if self.cur_has_field {
                out.push(Item::Event(std::mem::take(&mut self.cur)));
            }
            self.cur_has_field = false;
            self.cur_size = 0;
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::Utf8)?;
        if let Some(comment) = line.strip_prefix(':') {
            out.push(Item::Comment(comment.to_string()));
            return Ok(());
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = line.get(i + 1..).unwrap_or("");
                (
                    line.get(..i).unwrap_or(""),
                    v.strip_prefix(' ').unwrap_or(v),
                )
            }
            None => (line, ""),
        };
        match field {
            "data" => {
                self.cur_has_field = true;
                match &mut self.cur.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.cur.data = Some(value.to_string()),
                }
            }
            "event" => {
                self.cur_has_field = true;
                self.cur.event = Some(value.to_string());
            }
            // Per spec an id containing NUL is ignored.
            "id" if !value.contains('\0') => {
                self.cur_has_field = true;
                self.cur.id = Some(value.to_string());
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(r) = value.parse() {
                    self.cur_has_field = true;
                    self.cur.retry = Some(r);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// End of stream: an unterminated event is discarded, as browsers do.
    /// Returns whether anything was pending (a truncated stream).
    pub fn finish(&mut self) -> bool {
        let truncated = self.cur_has_field || !self.line.is_empty();
        self.line.clear();
        self.cur = Event::default();
        self.cur_has_field = false;
        self.cur_size = 0;
        truncated
    }
}

/// Parse a complete event stream body.
pub fn parse_all(body: &[u8], max_event: usize) -> Result<Vec<Item>, SseError> {
    let mut p = Parser::new(max_event);
    let mut out = Vec::new();
    p.feed(body, &mut out)?;
    // A final event without its blank line still counts in a buffered body.
    p.feed(b"\n\n", &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn events(items: &[Item]) -> Vec<Event> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBF: keep\r\nid: 1\r\nretry: 500\r\ndata:\r\n\r\nevent: message\ndata: {\"a\":1}\ndata: {\"b\":2}\n\nid: x\rdata: y\r\rfoo\n\n";

    #[test]
    fn parses_fields() {
        let items = parse_all(STREAM, 1 << 20).unwrap();
        assert_eq!(items[0], Item::Comment(" keep".into()));
        let ev = events(&items);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].id.as_deref(), Some("1"));
        assert_eq!(ev[0].retry, Some(500));
        assert_eq!(ev[0].data.as_deref(), Some(""));
        assert_eq!(ev[1].data.as_deref(), Some("{\"a\":1}\n{\"b\":2}"));
        assert_eq!(ev[1].event_type(), "message");
        assert_eq!(ev[2].id.as_deref(), Some("x"));
        assert_eq!(ev[2].data.as_deref(), Some("y"));
    }

    #[test]
    fn any_chunking_gives_the_same_items() {
        let whole = parse_all(STREAM, 1 << 20).unwrap();
        for split in 1..STREAM.len() {
            for split2 in split..STREAM.len() {
                let mut p = Parser::new(1 << 20);
                let mut out = Vec::new();
                p.feed(&STREAM[..split], &mut out).unwrap();
                p.feed(&STREAM[split..split2], &mut out).unwrap();
                p.feed(&STREAM[split2..], &mut out).unwrap();
                p.feed(b"\n\n", &mut out).unwrap();
                assert_eq!(out, whole, "split at {split}/{split2}");
            }
        }
    }

    #[test]
    fn round_trip_through_writer() {
        let items = parse_all(STREAM, 1 << 20).unwrap();
        let mut buf = Vec::new();
        for i in &items {
            i.write(&mut buf);
        }
        assert_eq!(parse_all(&buf, 1 << 20).unwrap(), items);
    }

    #[test]
    fn size_limit() {
        let mut p = Parser::new(16);
        let mut out = Vec::new();
        assert!(p.feed(b"data: 0123456789012345678", &mut out).is_err());
        let mut p = Parser::new(16);
        assert!(p
            .feed(b"data: 01234\ndata: 0123456789\n", &mut out)
            .is_err());
    }

    #[test]
    fn writer_cannot_be_smuggled() {
        let e = Event {
            id: Some("a\nevent: evil".into()),
            ..Event::data("x".into())
        };
        let mut buf = Vec::new();
        e.write(&mut buf);
        let back = events(&parse_all(&buf, 1024).unwrap());
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].event, None);
    }

    #[test]
    fn truncated_stream_is_reported() {
        let mut p = Parser::new(1024);
        let mut out = Vec::new();
        p.feed(b"data: partial", &mut out).unwrap();
        assert!(out.is_empty());
        assert!(p.finish());
    }
}
