//! Wire formats, with no gateway policy: JSON-RPC 2.0 envelopes, SSE framing,
//! the MCP method table, the Streamable HTTP header rules and the stateless
//! 2026-07-28 revision's request metadata (`modern`).

pub mod http;
pub mod jsonrpc;
pub mod mcp;
pub mod modern;
pub mod sse;
