//! Wire formats, with no gateway policy: JSON-RPC 2.0 envelopes, SSE framing,
//! the MCP method table and the Streamable HTTP header rules.

pub mod http;
pub mod jsonrpc;
pub mod mcp;
pub mod sse;
