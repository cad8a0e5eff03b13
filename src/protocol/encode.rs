//! The client side of the wire: the subject of every command and the bytes of every request,
//! written from the same prefixes, field names and header names the parsers read.
//!
//! Clients — the CLI, the operator's admin client, the bench, the permission builder — never
//! spell a subject or a JSON field themselves: a renamed field or command word then changes
//! both sides at once, and the unit tests here parse every encoded request back with the
//! broker's own parser (`parse(encode(x)) == x`, `subject::parse(builder(..)) == route`).
//! Only `tests/` spells the wire by hand, on purpose, to catch a drift of both sides together.
//!
//! - [`subjects`]: one builder per command, plus the patterns permissions are made of;
//! - [`bodies`]: `encode()` for each typed request, `to_headers()` for a SEND's options.

pub mod bodies;
pub mod subjects;
