//! Waking one request from another ([`Host::wake`](mcpgw_core::gateway::Host::wake)):
//! a request that waits for another request's token exchange is parked; the
//! core wakes it when that exchange ends, or at a deadline.
//!
//! proxy-wasm has no call into another HTTP context, so the root context's
//! tick does it: while anything is parked the tick runs every
//! [`TICK`], and each due request's `woken` hook runs with that request as the
//! effective context. Side calls made then are registered by the SDK under
//! the root context (the one it is running), so their answers reach the
//! root, which hands them to the request that made them ([`CALLOUTS`]).

use mcpgw_core::gateway::Exchange;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// The tick period while requests are parked.
const TICK: Duration = Duration::from_millis(5);

pub type Shared = Rc<RefCell<Exchange>>;

thread_local! {
    /// Live requests by context id.
    static REQUESTS: RefCell<HashMap<u32, Weak<RefCell<Exchange>>>> = RefCell::new(HashMap::new());
    /// Requests to wake at the next tick.
    static NOW: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Parked requests and their deadlines (ms since the epoch).
    static DEADLINES: RefCell<HashMap<u32, u64>> = RefCell::new(HashMap::new());
    /// Side calls made for a request from the root's callbacks: token -> request.
    static CALLOUTS: RefCell<HashMap<u32, u32>> = RefCell::new(HashMap::new());
    /// Set while the root runs a request's hook.
    static FOREIGN: Cell<bool> = const { Cell::new(false) };
    static TICKING: Cell<bool> = const { Cell::new(false) };
}

pub fn register(ctx: u32, ex: &Shared) {
    REQUESTS.with(|r| r.borrow_mut().insert(ctx, Rc::downgrade(ex)));
}

pub fn unregister(ctx: u32) {
    REQUESTS.with(|r| r.borrow_mut().remove(&ctx));
    DEADLINES.with(|d| d.borrow_mut().remove(&ctx));
}

/// Wake `ctx` at the next tick (`None`) or by `at_ms`.
pub fn wake(ctx: u32, at_ms: Option<u64>) {
    match at_ms {
        None => NOW.with(|n| n.borrow_mut().push(ctx)),
        Some(t) => DEADLINES.with(|d| {
            let mut d = d.borrow_mut();
            let e = d.entry(ctx).or_insert(t);
            *e = (*e).min(t);
        }),
    }
    if !TICKING.with(Cell::get) {
        TICKING.with(|t| t.set(true));
        let _ = proxy_wasm::hostcalls::set_tick_period(TICK);
    }
}

/// A side call just made: remember its owner when the root made it for a
/// request (its answer then reaches the root).
pub fn dispatched(token: u32, owner: u32) {
    if FOREIGN.with(Cell::get) {
        CALLOUTS.with(|c| c.borrow_mut().insert(token, owner));
    }
}

/// The request a side call answered at the root was made for.
pub fn owner_of(token: u32) -> Option<u32> {
    CALLOUTS.with(|c| c.borrow_mut().remove(&token))
}

/// Run `f` on request `ctx` as the effective context (from a root callback).
pub fn run_for(ctx: u32, f: impl FnOnce(&mut Exchange)) {
    let Some(ex) = REQUESTS.with(|r| r.borrow().get(&ctx).and_then(Weak::upgrade)) else {
        return;
    };
    if proxy_wasm::hostcalls::set_effective_context(ctx).is_err() {
        return;
    }
    let Ok(mut ex) = ex.try_borrow_mut() else {
        return;
    };
    FOREIGN.with(|f| f.set(true));
    f(&mut ex);
    FOREIGN.with(|f| f.set(false));
}

/// The root's tick: the requests that are due, to wake now.
pub fn due(now_ms: u64) -> Vec<u32> {
    let mut due: Vec<u32> = NOW.with(|n| std::mem::take(&mut *n.borrow_mut()));
    DEADLINES.with(|d| {
        let mut d = d.borrow_mut();
        d.retain(|ctx, t| {
            let keep = *t > now_ms && !due.contains(ctx);
            if !keep && !due.contains(ctx) {
                due.push(*ctx);
            }
            keep
        });
    });
    due
}

/// After a tick: stop ticking when nothing is parked.
pub fn settle() {
    let idle = NOW.with(|n| n.borrow().is_empty()) && DEADLINES.with(|d| d.borrow().is_empty());
    if idle && TICKING.with(Cell::get) {
        TICKING.with(|t| t.set(false));
        let _ = proxy_wasm::hostcalls::set_tick_period(Duration::ZERO);
    }
}
