//! The MCP method table and protocol versions: what each method is, from the
//! gateway's point of view (answered here, fanned out, or routed by a name,
//! a URI or a token inside it).

/// Protocol revisions, oldest first: those that use the `initialize`
/// handshake (the "legacy era" in 2026-07-28 terms), then the stateless
/// ("modern") 2026-07-28.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V2024_11_05,
    V2025_03_26,
    V2025_06_18,
    V2025_11_25,
    /// Stateless: no `initialize`, every request carries its version and
    /// capabilities; a backend session entry with this version has no id.
    V2026_07_28,
}

impl Version {
    /// Every revision the gateway serves on its endpoint, newest first (the
    /// `supported` list of `-32022` and of `server/discover`).
    pub const ALL_SERVED: [Version; 4] = [
        Version::V2026_07_28,
        Version::V2025_11_25,
        Version::V2025_06_18,
        Version::V2025_03_26,
    ];
    /// What the gateway negotiates with `initialize`, newest first.
    pub const SERVED: [Version; 3] = [
        Version::V2025_11_25,
        Version::V2025_06_18,
        Version::V2025_03_26,
    ];
    pub const LATEST: Version = Version::V2025_11_25;
    /// The version a client that sends no `MCP-Protocol-Version` header is assumed to speak.
    pub const DEFAULT_HEADERLESS: Version = Version::V2025_03_26;

    pub fn parse(s: &str) -> Option<Version> {
        Some(match s {
            "2024-11-05" => Version::V2024_11_05,
            "2025-03-26" => Version::V2025_03_26,
            "2025-06-18" => Version::V2025_06_18,
            "2025-11-25" => Version::V2025_11_25,
            "2026-07-28" => Version::V2026_07_28,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V2024_11_05 => "2024-11-05",
            Version::V2025_03_26 => "2025-03-26",
            Version::V2025_06_18 => "2025-06-18",
            Version::V2025_11_25 => "2025-11-25",
            Version::V2026_07_28 => "2026-07-28",
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            Version::V2024_11_05 => 1,
            Version::V2025_03_26 => 2,
            Version::V2025_06_18 => 3,
            Version::V2025_11_25 => 4,
            Version::V2026_07_28 => 5,
        }
    }

    pub fn from_byte(b: u8) -> Option<Version> {
        Some(match b {
            1 => Version::V2024_11_05,
            2 => Version::V2025_03_26,
            3 => Version::V2025_06_18,
            4 => Version::V2025_11_25,
            5 => Version::V2026_07_28,
            _ => return None,
        })
    }

    /// The version to answer a client's `initialize` with: its own if we
    /// serve it, otherwise our latest (the client decides whether to go on).
    pub fn negotiate(requested: &str) -> Version {
        match Version::parse(requested) {
            Some(v) if Version::SERVED.contains(&v) => v,
            _ => Version::LATEST,
        }
    }

    /// The stateless era (no `initialize`, no sessions).
    pub fn is_modern(self) -> bool {
        self >= Version::V2026_07_28
    }

    /// JSON-RPC batches were removed in 2025-06-18.
    pub fn allows_batches(self) -> bool {
        self <= Version::V2025_03_26
    }
}

/// Revisions without `initialize` (stateless, `server/discover`).
pub const MODERN_VERSIONS: [&str; 1] = ["2026-07-28"];

pub fn is_modern_version(s: &str) -> bool {
    MODERN_VERSIONS.contains(&s)
}

/// The list methods the gateway merges across backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
    /// 2025-11-25 tasks (experimental): ids are sealed per backend, not renamed.
    Tasks,
}

impl ListKind {
    pub const ALL: [ListKind; 5] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::ResourceTemplates,
        ListKind::Tasks,
    ];

    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
            ListKind::Tasks => "tasks/list",
        }
    }

    /// The member of the result holding the items.
    pub fn items_key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
            ListKind::Tasks => "tasks",
        }
    }

    /// The server capability that announces this list.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::ResourceTemplates => "resources",
            ListKind::Tasks => "tasks",
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            ListKind::Tools => 1,
            ListKind::Prompts => 2,
            ListKind::Resources => 3,
            ListKind::ResourceTemplates => 4,
            ListKind::Tasks => 5,
        }
    }
}

/// Client-to-server requests, by how the gateway handles them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Initialize,
    /// Answered by the gateway itself.
    Ping,
    /// Fanned out to every backend of the session and merged.
    List(ListKind),
    /// Routed by the (prefixed) name in `params.name`.
    CallTool,
    GetPrompt,
    /// Routed by the (namespaced) URI in `params.uri`.
    ReadResource,
    Subscribe,
    Unsubscribe,
    /// Routed by `params.ref` (a prompt name or a resource URI).
    Complete,
    /// `tasks/get`, `tasks/result`, `tasks/cancel` (2025-11-25) and
    /// `tasks/update` (the 2026-07-28 tasks extension): routed by the sealed
    /// `params.taskId`.
    Task,
    /// Fanned out; the answer is empty.
    SetLogLevel,
    /// 2026-07-28: answered by the gateway from what it learned of the backends.
    Discover,
    /// 2026-07-28 `subscriptions/listen`: a long-lived notification stream.
    Listen,
    /// Anything else: -32601.
    Unknown,
}

impl Request {
    /// Every method the gateway knows, with how it handles it.
    pub const TABLE: [(&'static str, Request); 20] = [
        ("initialize", Request::Initialize),
        ("ping", Request::Ping),
        ("tools/list", Request::List(ListKind::Tools)),
        ("prompts/list", Request::List(ListKind::Prompts)),
        ("resources/list", Request::List(ListKind::Resources)),
        (
            "resources/templates/list",
            Request::List(ListKind::ResourceTemplates),
        ),
        ("tools/call", Request::CallTool),
        ("prompts/get", Request::GetPrompt),
        ("resources/read", Request::ReadResource),
        ("resources/subscribe", Request::Subscribe),
        ("resources/unsubscribe", Request::Unsubscribe),
        ("completion/complete", Request::Complete),
        ("tasks/list", Request::List(ListKind::Tasks)),
        ("tasks/get", Request::Task),
        ("tasks/result", Request::Task),
        ("tasks/cancel", Request::Task),
        ("tasks/update", Request::Task),
        ("logging/setLevel", Request::SetLogLevel),
        ("server/discover", Request::Discover),
        ("subscriptions/listen", Request::Listen),
    ];

    pub fn classify(method: &str) -> Request {
        Self::TABLE
            .iter()
            .find(|(m, _)| *m == method)
            .map_or(Request::Unknown, |(_, r)| *r)
    }
}

/// Client-to-server notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    Initialized,
    Cancelled,
    Progress,
    RootsListChanged,
    Other,
}

impl Notification {
    /// Every notification the gateway knows.
    pub const TABLE: [(&'static str, Notification); 4] = [
        ("notifications/initialized", Notification::Initialized),
        ("notifications/cancelled", Notification::Cancelled),
        ("notifications/progress", Notification::Progress),
        (
            "notifications/roots/list_changed",
            Notification::RootsListChanged,
        ),
    ];

    pub fn classify(method: &str) -> Notification {
        Self::TABLE
            .iter()
            .find(|(m, _)| *m == method)
            .map_or(Notification::Other, |(_, n)| *n)
    }
}

/// Server capabilities the gateway can serve through its routing, with the
/// sub-flags it can honour. A backend capability outside this table is not
/// advertised: clients must never be promised what the gateway drops.
pub const ROUTABLE_CAPABILITIES: &[(&str, &[&str])] = &[
    ("tools", &["listChanged"]),
    ("prompts", &["listChanged"]),
    ("resources", &["listChanged", "subscribe"]),
    ("completions", &[]),
    ("logging", &[]),
    // Merged as a deep union: its members are presence flags, nested.
    ("tasks", &[]),
];

/// Methods a backend may send to the client inside its streams.
pub fn is_server_request(method: &str) -> bool {
    matches!(
        method,
        "sampling/createMessage" | "elicitation/create" | "roots/list" | "ping"
    )
}

/// Longest tool name clients are known to accept (and the 2025-11-25 guidance).
pub const MAX_TOOL_NAME: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn negotiation() {
        assert_eq!(Version::negotiate("2025-06-18"), Version::V2025_06_18);
        assert_eq!(Version::negotiate("2025-03-26"), Version::V2025_03_26);
        assert_eq!(Version::negotiate("2026-07-28"), Version::LATEST);
        assert!(Version::V2026_07_28.is_modern() && !Version::LATEST.is_modern());
        for v in Version::ALL_SERVED {
            assert_eq!(Version::from_byte(v.to_byte()), Some(v));
            assert_eq!(Version::parse(v.as_str()), Some(v));
        }
        assert_eq!(Version::negotiate("2024-11-05"), Version::LATEST);
        assert_eq!(Version::negotiate("garbage"), Version::LATEST);
        for v in Version::SERVED {
            assert_eq!(Version::from_byte(v.to_byte()), Some(v));
            assert_eq!(Version::parse(v.as_str()), Some(v));
        }
    }

    #[test]
    fn table() {
        assert_eq!(
            Request::classify("tools/list"),
            Request::List(ListKind::Tools)
        );
        assert_eq!(Request::classify("server/discover"), Request::Discover);
        assert_eq!(Request::classify("tasks/get"), Request::Task);
        assert_eq!(
            Request::classify("tasks/list"),
            Request::List(ListKind::Tasks)
        );
        assert_eq!(Request::classify("resources/unknown"), Request::Unknown);
        assert_eq!(
            Notification::classify("notifications/initialized"),
            Notification::Initialized
        );
    }
}
