//! The span walker: maps each tape node that the decoder wants to its byte span of the
//! original body, by replaying the JSON grammar over the tape and simd-json's structural
//! indexes in lock step (see the parent module's docs, "How the spans are found").
//!
//! This is the only code that reads simd-json's internals (`Buffers::structural_indexes`
//! and the shape of its tape); `simd-json` is pinned for it in Cargo.toml and
//! `tests/simd_json_pin.rs` fails loudly if those internals change.

use simd_json::{Node, StaticNode};

use super::MAX_DEPTH;

/// Byte range `[start, end)` of one tape node's text in the original body. `u32` is enough
/// because simd-json refuses bodies of 4 GiB or more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: u32,
    pub(super) end: u32,
}

pub(super) fn is_json_whitespace(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The tape and the token offsets did not line up (see [`SPAN_MISMATCH`]).
#[derive(Debug)]
pub(super) struct SpanMismatch;

/// Which nodes a [`SpanWalker`] spans.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wanted {
    /// The nesting levels whose values get spans: bit `n` for level `n` (bit 63 for 63 and
    /// deeper), the root being on level 1 and the keys and values of a container on level
    /// `n` on level `n + 1`. Tokens that are not part of a wanted span are counted, not
    /// read, and containers on the deepest wanted level or below are not walked into.
    pub(super) levels: u64,
    /// Whether keys get spans too, and every `,` and `:` is read and checked. With every
    /// level this reads and checks every token: the full walk that the tests use to pin
    /// down the correspondence.
    pub(super) keys: bool,
}

impl Wanted {
    /// Every node, every token read and checked.
    #[cfg(test)]
    pub(super) const EVERY_TOKEN: Wanted = Wanted {
        levels: u64::MAX,
        keys: true,
    };

    /// Whether the values on `level` get spans.
    pub(super) fn spans(self, level: usize) -> bool {
        (self.levels >> level.min(63)) & 1 == 1
    }

    /// Whether the members of a container on `level` have to be walked: some wanted
    /// level lies below it.
    fn enters(self, level: usize) -> bool {
        let below = level + 1;
        if below < 64 {
            self.levels >> below != 0
        } else {
            self.spans(63)
        }
    }
}

/// Walks the tape and simd-json's token offsets in lock step, writing each node's span.
pub(super) struct SpanWalker<'w, 'de> {
    pub(super) tape: &'w [Node<'de>],
    /// Byte offsets of token starts, from [`Buffers::structural_indexes`].
    pub(super) tokens: &'w [u32],
    /// The original body; the offsets index it exactly as they index the scratch copy.
    pub(super) body: &'w [u8],
    pub(super) spans: &'w mut [Span],
    pub(super) next_node: usize,
    pub(super) next_token: usize,
}

impl SpanWalker<'_, '_> {
    /// Spans every node of the document, reading and checking every token.
    #[cfg(test)]
    pub(super) fn walk_document(&mut self) -> Result<(), SpanMismatch> {
        self.walk(Wanted::EVERY_TOKEN)
    }

    /// Spans the `wanted` nodes; the spans of the others stay as they were (empty after
    /// `parse_body`'s reset, which [`raw_at`] refuses).
    ///
    /// Which token belongs to which node follows from the tape alone (see
    /// [`SpanWalker::skip_members`] for the arithmetic), so only the tokens that end up in
    /// a span need to be read. simd-json validated the text; what is checked here is that
    /// tokens and nodes belong together:
    ///
    /// * both sequences are used up exactly, which catches a token too many or too few
    ///   anywhere, and token offsets rise strictly inside the body, so a token that is
    ///   off can only be off to somewhere between its neighbours;
    /// * every token that is read starts what the tape says: `{` for an object, `"` for a
    ///   string, `t` for `true`, its closing bracket where a container ends, a separator or
    ///   a closing bracket after a value, `,` between members and `:` after a key;
    /// * a scalar's last byte fits its type too (a quote, a digit, a whole literal), and a
    ///   container's members use up exactly its `count` nodes.
    ///
    /// With [`Wanted::keys`] and every level, every token is read and checked.
    pub(super) fn walk(&mut self, wanted: Wanted) -> Result<(), SpanMismatch> {
        // Offsets stay below u32::MAX - 1, so `offset + 2` cannot overflow.
        if self.body.len() >= u32::MAX as usize || self.spans.len() < self.tape.len() {
            return Err(SpanMismatch);
        }
        let inside = self
            .tokens
            .last()
            .is_none_or(|&last| (last as usize) < self.body.len());
        // A fold rather than `all`: no early exit, so the loop vectorizes.
        let later = self.tokens.get(1..).unwrap_or_default();
        let rising = self
            .tokens
            .iter()
            .zip(later)
            .fold(true, |rising, (a, b)| rising & (a < b));
        if !inside || !rising {
            return Err(SpanMismatch);
        }
        self.value(1, wanted)?;
        if self.next_node == self.tape.len() && self.next_token == self.tokens.len() {
            Ok(())
        } else {
            Err(SpanMismatch)
        }
    }

    /// Walks the value at the next node, on nesting level `level`. Scalars are handled
    /// inline in the member loop of [`SpanWalker::members`]; only a container that has to
    /// be walked costs a (recursive) call.
    #[inline(always)]
    fn value(&mut self, level: usize, wanted: Wanted) -> Result<(), SpanMismatch> {
        let index = self.next_node;
        let node = *self.tape.get(index).ok_or(SpanMismatch)?;
        self.next_node += 1;
        let (len, count, object) = match node {
            Node::Object { len, count } => (len, count, true),
            Node::Array { len, count } => (len, count, false),
            scalar if wanted.spans(level) => {
                let (start, first) = self.first_token()?;
                let end = self.scalar_end(scalar, start, first)?;
                return self.set(index, start, end);
            }
            _ => {
                self.next_token += 1;
                return Ok(());
            }
        };
        let (open, close) = if object { (b'{', b'}') } else { (b'[', b']') };
        let start = if wanted.spans(level) {
            match self.first_token()? {
                (start, byte) if byte == open => Some(start),
                _ => return Err(SpanMismatch),
            }
        } else {
            self.next_token += 1;
            None
        };
        if len > 0 && !wanted.enters(level) {
            self.skip_members(index, count)?;
        } else {
            self.members(index, len, count, object, level, wanted)?;
        }
        match start {
            Some(start) => {
                let end = self.expect(close)? + 1;
                self.set(index, start, end)
            }
            None => {
                self.next_token += 1;
                Ok(())
            }
        }
    }

    /// Walks the members of the container at tape index `index`, on nesting level
    /// `level`, up to (not including) its closing token.
    // Recursion is bounded by MAX_DEPTH; simd-json already refused deeper documents (it
    // counts containers as here), so running into it is a mismatch, never a crash.
    #[inline(never)]
    fn members(
        &mut self,
        index: usize,
        len: usize,
        count: usize,
        object: bool,
        level: usize,
        wanted: Wanted,
    ) -> Result<(), SpanMismatch> {
        if level > MAX_DEPTH {
            return Err(SpanMismatch);
        }
        for member in 0..len {
            if member > 0 {
                if wanted.keys {
                    self.expect(b',')?;
                } else {
                    self.next_token += 1;
                }
            }
            if object {
                self.key(wanted.keys)?;
            }
            self.value(level + 1, wanted)?;
        }
        // `next_node > index`: the container's own node was taken.
        if self.next_node - index - 1 == count {
            Ok(())
        } else {
            Err(SpanMismatch)
        }
    }

    /// Consumes the next token, returning its offset and first byte.
    fn token(&mut self) -> Result<(u32, u8), SpanMismatch> {
        let offset = *self.tokens.get(self.next_token).ok_or(SpanMismatch)?;
        self.next_token += 1;
        let byte = *self.body.get(offset as usize).ok_or(SpanMismatch)?;
        Ok((offset, byte))
    }

    /// Consumes the next token as the first of a key or value. Only an opening bracket, a
    /// separator or whitespace can come right before one; anything else means the token
    /// points into the middle of a value.
    fn first_token(&mut self) -> Result<(u32, u8), SpanMismatch> {
        let (offset, byte) = self.token()?;
        let before = offset.checked_sub(1).map(|i| self.body.get(i as usize));
        match before {
            None | Some(Some(b'{' | b'[' | b',' | b':' | b' ' | b'\t' | b'\n' | b'\r')) => {
                Ok((offset, byte))
            }
            Some(_) => Err(SpanMismatch),
        }
    }

    /// Consumes the next token, which must be `want` (a separator or closing bracket).
    fn expect(&mut self, want: u8) -> Result<u32, SpanMismatch> {
        match self.token()? {
            (offset, byte) if byte == want => Ok(offset),
            _ => Err(SpanMismatch),
        }
    }

    fn set(&mut self, index: usize, start: u32, end: u32) -> Result<(), SpanMismatch> {
        *self.spans.get_mut(index).ok_or(SpanMismatch)? = Span { start, end };
        Ok(())
    }

    /// Consumes an object key and the `:` after it; with `span`, checks both tokens and
    /// records the key's span.
    fn key(&mut self, span: bool) -> Result<(), SpanMismatch> {
        let index = self.next_node;
        if !matches!(self.tape.get(index), Some(Node::String(_))) {
            return Err(SpanMismatch);
        }
        self.next_node += 1;
        if !span {
            self.next_token += 2;
            return Ok(());
        }
        let (start, first) = self.first_token()?;
        let colon = self.expect(b':')?;
        let (end, last) = self.text_end(start, colon)?;
        if !is_string(start, first, end, last) {
            return Err(SpanMismatch);
        }
        self.set(index, start, end)
    }

    /// End of the scalar `node` whose token (at `start`, first byte `first`) was just
    /// consumed. Strings must also end in `"`, numbers in a digit, and a literal must be
    /// exactly its word.
    #[inline(always)] // LLVM keeps it out of line otherwise, costing a call per value
    fn scalar_end(&self, node: Node<'_>, start: u32, first: u8) -> Result<u32, SpanMismatch> {
        let limit = match self.tokens.get(self.next_token) {
            // Only a separator or a closing bracket can follow a value.
            Some(&offset) => match self.body.get(offset as usize) {
                Some(b',' | b'}' | b']') => offset,
                _ => return Err(SpanMismatch),
            },
            None => self.body.len() as u32, // fits, checked by `walk`
        };
        let (end, last) = self.text_end(start, limit)?;
        let fits = match node {
            Node::String(_) => is_string(start, first, end, last),
            Node::Static(StaticNode::Null) => self.is_word(start, end, b"null"),
            Node::Static(StaticNode::Bool(true)) => self.is_word(start, end, b"true"),
            Node::Static(StaticNode::Bool(false)) => self.is_word(start, end, b"false"),
            // Any number variant (the set differs with simd-json's `128bit` feature).
            Node::Static(_) => (first == b'-' || first.is_ascii_digit()) && last.is_ascii_digit(),
            Node::Object { .. } | Node::Array { .. } => false,
        };
        if fits {
            Ok(end)
        } else {
            Err(SpanMismatch)
        }
    }

    /// End of a scalar's text that starts at `start` and is followed by the token at
    /// `limit` (or by the end of the body): `limit` less the whitespace before it, as
    /// only whitespace can separate a scalar from the next token. Also returns the last
    /// byte of the text, which cannot be whitespace.
    fn text_end(&self, start: u32, limit: u32) -> Result<(u32, u8), SpanMismatch> {
        let mut end = limit;
        while end > start {
            let last = *self.body.get(end as usize - 1).ok_or(SpanMismatch)?;
            if !is_json_whitespace(&last) {
                return Ok((end, last));
            }
            end -= 1;
        }
        Err(SpanMismatch)
    }

    fn is_word(&self, start: u32, end: u32, word: &[u8]) -> bool {
        self.body.get(start as usize..end as usize) == Some(word)
    }

    /// Moves past the members of the non-empty container at tape index `index`, whose
    /// opening token was just consumed, without walking its `count` descendants: on to
    /// the node after them and to its closing token.
    ///
    /// Where that token is follows from the tape alone. A value of `n` nodes takes
    /// `2n - 1 + e` tokens, `e` being the number of empty objects and arrays in it:
    /// besides its own node, a non-empty container adds one token per child node (a `,`
    /// before every child but the first, a `:` after every key, and its closing bracket
    /// for the first child), an empty one adds just its closing bracket, and every node
    /// but the root is exactly one container's child. So only the empty containers need
    /// counting, a pass over the nodes that reads neither tokens nor body bytes.
    fn skip_members(&mut self, index: usize, count: usize) -> Result<(), SpanMismatch> {
        let after = (index + 1).checked_add(count).ok_or(SpanMismatch)?;
        let inner = self.tape.get(index + 1..after).ok_or(SpanMismatch)?;
        // The opening token was `next_token - 1`; the closing one is the last of the
        // `2 * (count + 1) - 1 + empty` tokens from there.
        let to_close = (2 * count + count_empty_containers(inner))
            .checked_sub(1)
            .ok_or(SpanMismatch)?;
        self.next_token += to_close;
        self.next_node = after;
        Ok(())
    }
}

/// Whether the text `start..end`, whose first and last bytes are given, is a string:
/// at least two bytes, both of them quotes.
fn is_string(start: u32, first: u8, end: u32, last: u8) -> bool {
    first == b'"' && last == b'"' && end >= start + 2
}

/// Number of `{}` and `[]` among `nodes`.
fn count_empty_containers(nodes: &[Node<'_>]) -> usize {
    nodes
        .iter()
        .filter(|n| matches!(n, Node::Object { len: 0, .. } | Node::Array { len: 0, .. }))
        .count()
}
