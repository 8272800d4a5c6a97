//! Host adapters: the only code that calls the proxy. Each turns its host's
//! callbacks into calls on `gateway::Exchange` and applies the decisions.

mod proxy_wasm;
