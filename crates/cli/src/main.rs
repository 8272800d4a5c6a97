//! `mcpgw`: one command from an agent's MCP servers file (or an MCPRoute
//! file) to a running gateway, and the same description rendered for Envoy /
//! func-e and for Kubernetes with Envoy Gateway.

mod bridge;
mod child;
mod discovery;
mod engine;
mod envoy_bin;
#[cfg(test)]
mod golden;
mod keys;
mod mcp_config;
mod mcproute;
mod model;
mod plugin;
mod relay;
mod render_envoy;
mod render_kube;
mod run;
mod token_exchange;
mod yaml;

use clap::{Args, Parser, Subcommand};
use mcp_config::EnvCheck;
use model::{Diagnostics, Gateway};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Hex sha256 of the embedded mcpgw.wasm.
pub fn wasm_sha256() -> String {
    engine::Engine::Wasm.sha256()
}

fn long_version() -> String {
    format!(
        "{} (libmcpgw.so sha256 {}, mcpgw.wasm sha256 {})",
        env!("CARGO_PKG_VERSION"),
        engine::Engine::Module.sha256(),
        wasm_sha256()
    )
}

const ABOUT: &str =
    "MCP gateway: one Streamable HTTP endpoint in front of many MCP servers, run in Envoy";

const LONG_ABOUT: &str = "\
mcpgw turns Envoy into one MCP endpoint (http://localhost:1975/mcp) in front of \
many MCP servers. It reads the servers file your agent already has (Claude, \
Cursor, VS Code: `mcpServers` / `servers`) or an Envoy AI Gateway MCPRoute file, \
and runs Envoy with the embedded filter: the dynamic module libmcpgw.so (the \
default) or mcpgw.wasm (`--engine wasm`). stdio servers are started and \
bridged to HTTP. The same input renders to an envoy.yaml (for `envoy -c` or \
`func-e run -c`) and to Envoy Gateway manifests (`render --kubernetes`).

Quick start:
  mcpgw run --mcp-config ~/.cursor/mcp.json
  mcpgw run mcp-route.yaml
  mcpgw check mcp-route.yaml
  mcpgw render --mcp-config mcp.json > envoy.yaml
  mcpgw render --kubernetes mcp-route.yaml --wasm-image ghcr.io/you/mcpgw:0.1.0
  mcpgw render --kubernetes mcp-route.yaml --engine module --module-image ghcr.io/you/mcpgw-module:0.1.0";

#[derive(Parser, Debug)]
#[command(name = "mcpgw", about = ABOUT, long_about = LONG_ABOUT, disable_version_flag = true)]
struct Cli {
    /// Print the version and the embedded filters' sha256.
    #[arg(short = 'V', long, global = false)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway: start the stdio servers' bridges and Envoy with the
    /// filter, serve http://<address>:<port>/mcp until Ctrl-C / SIGTERM.
    Run(RunArgs),
    /// Print the envoy.yaml `run` would use, or with --kubernetes the Envoy
    /// Gateway manifests for the same gateway.
    Render(RenderArgs),
    /// Validate the input (exactly as `run` / `render` would) and explain any
    /// problem. Exit code 0 when valid, 1 otherwise.
    Check(CheckArgs),
}

/// The gateway description: an MCP servers file, or MCPRoute YAML files.
#[derive(Args, Debug, Clone)]
pub struct Input {
    /// MCPRoute YAML file(s): MCPRoute, Backend, BackendTLSPolicy, Secret and
    /// ConfigMap documents (several files are read as one). A `.json` file, or
    /// one whose content starts with `{`, is read as an MCP servers file.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// An MCP servers file (Claude Desktop / Claude Code `mcpServers`, Cursor,
    /// VS Code `servers`): HTTP servers by `url` (+ `headers` with ${VAR}), stdio
    /// servers by `command`/`args`/`env`/`cwd`, filters `tools` /
    /// `includeTools` / `excludeTools`.
    #[arg(long, value_name = "FILE", conflicts_with = "files")]
    pub mcp_config: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct Listen {
    /// Listener port of the MCP endpoint.
    #[arg(long, default_value_t = 1975)]
    pub port: u16,
    /// Envoy admin port (stats, /ready), on the same address.
    #[arg(long, default_value_t = 1064)]
    pub admin_port: u16,
    /// Address Envoy listens on. Anything but loopback exposes the gateway to
    /// the network: put authentication in front of it.
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub address: std::net::IpAddr,
    /// CA bundle for https backends [default: the system bundle, e.g.
    /// /etc/ssl/certs/ca-certificates.crt].
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// JSON access log with the MCP fields (method, tool, backend, JSON-RPC
    /// id, session tag): a file path, or `-` for standard output [default:
    /// none for `run`, `-` for `render`].
    #[arg(long, value_name = "PATH|-")]
    pub access_log: Option<String>,
    /// JSON audit log: one record per tools/call, prompts/get, resources/read
    /// and per denial (time, caller, session, backend, resource, decision and
    /// rule, outcome, latency; tool arguments redacted): a file path, or `-`
    /// for standard output [default: none].
    #[arg(long, value_name = "PATH|-")]
    pub audit_log: Option<String>,
    /// Rate limit per caller (the token's subject; `anonymous` without
    /// OAuth) over all its calls, gets and reads: N/PERIOD, e.g. `60/m`,
    /// `5/s`, `10/30s`. A limited call gets a JSON-RPC error with a retry hint.
    #[arg(long, value_name = "N/PERIOD")]
    pub limit_per_caller: Option<String>,
    /// Rate limit of one tool (its client-visible name) for all callers
    /// together: TOOL=N/PERIOD, e.g. `github__create_issue=10/m`. Repeatable.
    #[arg(long = "limit-tool", value_name = "TOOL=N/PERIOD")]
    pub limit_tool: Vec<String>,
}

impl Listen {
    /// The rate limits the flags ask for.
    pub fn limits(&self) -> Result<Vec<model::RateLimit>, String> {
        let mut out = Vec::new();
        if let Some(spec) = &self.limit_per_caller {
            let (requests, per_ms) =
                model::parse_rate(spec).map_err(|e| format!("--limit-per-caller: {e}"))?;
            out.push(model::RateLimit {
                key: model::LimitKey::PerCaller,
                requests,
                per_ms,
            });
        }
        for spec in &self.limit_tool {
            let (tool, rate) = spec.split_once('=').ok_or_else(|| {
                format!("--limit-tool {spec}: write TOOL=N/PERIOD, e.g. github__create_issue=10/m")
            })?;
            let (requests, per_ms) =
                model::parse_rate(rate).map_err(|e| format!("--limit-tool {spec}: {e}"))?;
            if tool.is_empty() || !mcpgw_core::protocol::http::is_safe_header_value(tool) {
                return Err(format!(
                    "--limit-tool {spec}: \"{tool}\" is not a tool name"
                ));
            }
            out.push(model::RateLimit {
                key: model::LimitKey::Tool(tool.to_string()),
                requests,
                per_ms,
            });
        }
        Ok(out)
    }
}

/// Fill in the JWKS of an OAuth issuer given without one (discovered from
/// its metadata), trusting `ca_file` (or the system bundle).
pub async fn discover_jwks(g: &mut Gateway, ca_file: Option<&Path>) -> Result<(), String> {
    let Some(o) = g.oauth.as_mut().filter(|o| o.jwks.is_none()) else {
        return Ok(());
    };
    let ca = envoy_bin::ca_file(ca_file)?;
    let (uri, from) = discovery::jwks_uri(&o.issuer, &ca).await?;
    eprintln!("mcpgw: JWKS of {}: {uri} (discovered in {from})", o.issuer);
    o.jwks = Some(model::Jwks::Remote {
        uri,
        cache_duration: None,
    });
    Ok(())
}

/// [`discover_jwks`] for the commands that run no runtime of their own.
fn discover_jwks_blocking(g: &mut Gateway, ca_file: Option<&Path>) -> Result<(), String> {
    if g.oauth.as_ref().is_none_or(|o| o.jwks.is_some()) {
        return Ok(());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(discover_jwks(g, ca_file))
}

#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// File holding the session key (32 random bytes, base64). Default:
    /// $MCPGW_SESSION_KEY, else a key generated once and kept in
    /// $XDG_CONFIG_HOME/mcpgw/session.key (~/.config/mcpgw/session.key).
    /// Replicas that share a key serve each other's sessions.
    #[arg(long, value_name = "FILE")]
    pub session_key_file: Option<PathBuf>,
    /// File holding the previous session key, still accepted for sessions
    /// issued before a rotation. Default: $MCPGW_PREVIOUS_SESSION_KEY.
    #[arg(long, value_name = "FILE")]
    pub previous_session_key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub listen: Listen,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The Envoy binary [default: $ENVOY_BIN, `envoy` on PATH, or the .venv
    /// `./build.sh envoy` makes in the mcpgw repository].
    #[arg(long, value_name = "PATH")]
    pub envoy: Option<PathBuf>,
    /// Envoy's log level (its wasm component logs at info or this, whichever
    /// is more verbose).
    #[arg(long, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,
    /// How long an idle stdio session (and its process) is kept.
    #[arg(long, default_value = "30m", value_name = "DURATION")]
    pub stdio_idle_timeout: String,
    /// Live processes per stdio server (one per client session) at most;
    /// past it a new session's `initialize` gets a JSON-RPC error. A
    /// server's "maxProcesses" in the servers file overrides it.
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub stdio_max_processes: u32,
    /// Run this stdio server as one process shared by every session (for
    /// servers that keep no per-client state), like "sharedProcess": true
    /// in the servers file. Repeatable.
    #[arg(long, value_name = "NAME")]
    pub stdio_shared: Vec<String>,
    /// When a stdio session ends its process's stdin is closed; if it is
    /// still running 2s later it gets SIGTERM, and SIGKILL after this long.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub stdio_kill_grace: String,
    /// Skip the startup check of every backend (initialize + tools/list
    /// through the gateway).
    #[arg(long)]
    pub no_probe: bool,
    /// Which build of the filter Envoy runs: `module` (the dynamic module
    /// libmcpgw.so: faster, merges several servers' GET streams) or `wasm`
    /// (mcpgw.wasm in Envoy's V8).
    #[arg(long, value_enum, default_value_t = engine::DEFAULT)]
    pub engine: engine::Engine,
}

#[derive(Args, Debug)]
struct RenderArgs {
    #[command(flatten)]
    input: Input,
    #[command(flatten)]
    listen: Listen,
    /// Which build of the filter the config runs: `module` (the dynamic
    /// module libmcpgw.so) or `wasm` (mcpgw.wasm) [default: module; with
    /// --kubernetes: wasm (the module needs Envoy 1.40 in the cluster)].
    #[arg(long, value_enum)]
    engine: Option<engine::Engine>,
    /// Path of mcpgw.wasm in the rendered envoy.yaml [default: where `mcpgw
    /// run` keeps it, $XDG_CACHE_HOME/mcpgw/mcpgw-<sha256>.wasm, written there
    /// by this command].
    #[arg(long, value_name = "PATH")]
    wasm: Option<PathBuf>,
    /// Path of libmcpgw.so in the rendered envoy.yaml [default: where `mcpgw
    /// run` keeps it, $XDG_CACHE_HOME/mcpgw/libmcpgw-<sha256>.so, written
    /// there by this command]. It must be built for the Envoy it runs in
    /// (the Envoy 1.40 Linux x86_64 build). With --kubernetes --engine
    /// module: its absolute path in the Envoy container, already there (your
    /// own Envoy image, or a volume you add).
    #[arg(long, value_name = "PATH", conflicts_with = "module_image")]
    module: Option<PathBuf>,
    /// Also accept $MCPGW_PREVIOUS_SESSION_KEY (key rotation).
    #[arg(long)]
    previous_session_key: bool,
    /// Print Envoy Gateway manifests instead: EnvoyExtensionPolicy (the wasm,
    /// or with --engine module the dynamic module), Backends, HTTPRoute,
    /// SecurityPolicy (JWT), EnvoyProxy + Secret (the session key; for the
    /// module also its registration and the Envoy 1.40 image), EnvoyPatchPolicy
    /// (wasm) and ClientTrafficPolicy.
    #[arg(long)]
    kubernetes: bool,
    /// With --kubernetes: HTTP(S) URL the cluster downloads mcpgw.wasm from
    /// (the embedded build; its sha256 is pinned).
    #[arg(
        long,
        value_name = "URL",
        requires = "kubernetes",
        conflicts_with = "wasm_image"
    )]
    wasm_url: Option<String>,
    /// With --kubernetes: OCI image holding the embedded build's mcpgw.wasm
    /// as plugin.wasm: REPO@sha256:<manifest digest> (pinned; Envoy Gateway
    /// checks the image's manifest digest) or REPO:TAG (not pinned).
    #[arg(long, value_name = "REF", requires = "kubernetes")]
    wasm_image: Option<String>,
    /// With --kubernetes --engine module: OCI image holding the embedded
    /// build's libmcpgw.so at its root, mounted into the Envoy container as
    /// an image volume: REPO@sha256:<manifest digest> (pinned) or REPO:TAG.
    #[arg(long, value_name = "REF", requires = "kubernetes")]
    module_image: Option<String>,
    /// With --kubernetes --engine module: the Envoy image the EnvoyProxy sets;
    /// it must run Envoy 1.40.x, whose dynamic-module ABI the module speaks.
    #[arg(
        long,
        value_name = "REF",
        requires = "kubernetes",
        default_value = render_kube::MODULE_ENVOY_IMAGE
    )]
    envoy_image: String,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    input: Input,
    /// Check for `render --kubernetes`: Backends and Secrets the file only
    /// references are expected to exist in the cluster; warns about what
    /// Envoy Gateway would refuse.
    #[arg(long)]
    kubernetes: bool,
    /// With --kubernetes: the build `render --kubernetes` would render for
    /// [default: wasm].
    #[arg(long, value_enum, requires = "kubernetes")]
    engine: Option<engine::Engine>,
    #[command(flatten)]
    kube: KubeArgs,
}

/// Where the Kubernetes manifests go (with --kubernetes).
#[derive(Args, Debug, Clone)]
pub struct KubeArgs {
    /// With --kubernetes and an MCP servers file: the Gateway to attach to
    /// [default: mcpgw, in the route's namespace].
    #[arg(long, value_name = "[NS/]NAME", requires = "kubernetes")]
    gateway: Option<String>,
    /// With --kubernetes and an MCP servers file: the Gateway's listener
    /// (parentRef sectionName) [default: the whole Gateway; the
    /// EnvoyPatchPolicy assumes a listener named http].
    #[arg(long, value_name = "NAME", requires = "kubernetes")]
    listener: Option<String>,
    /// With --kubernetes and an MCP servers file: the namespace of the
    /// HTTPRoute, its Backends and policies [default: default].
    #[arg(long, value_name = "NS", requires = "kubernetes")]
    namespace: Option<String>,
    /// With --kubernetes: where Envoy Gateway runs the Envoy pods, its
    /// provider.kubernetes.deploy.type: in its controller's namespace, or in
    /// each Gateway's. The Secrets Envoy reads are rendered there.
    #[arg(
        long,
        value_name = "TYPE",
        default_value = "ControllerNamespace",
        value_parser = ["ControllerNamespace", "GatewayNamespace"],
        requires = "kubernetes"
    )]
    deploy_type: String,
    /// With --kubernetes and ControllerNamespace: Envoy Gateway's namespace.
    #[arg(
        long,
        value_name = "NS",
        default_value = render_kube::DEFAULT_CONTROLLER_NAMESPACE,
        requires = "kubernetes"
    )]
    controller_namespace: String,
}

impl KubeArgs {
    fn deploy(&self) -> render_kube::Deploy {
        if self.deploy_type == "GatewayNamespace" {
            render_kube::Deploy::GatewayNamespace
        } else {
            render_kube::Deploy::ControllerNamespace(self.controller_namespace.clone())
        }
    }

    /// An MCP servers file names no Gateway: attach to the one given here.
    fn place(&self, g: &mut Gateway) -> Result<(), String> {
        if !g.kube.parent_refs.is_empty() {
            if self.gateway.is_some() || self.listener.is_some() || self.namespace.is_some() {
                return Err(format!(
                    "{}: --gateway, --listener and --namespace are for an MCP servers file; the MCPRoute names its parentRefs and namespace",
                    g.source
                ));
            }
            return Ok(());
        }
        if let Some(ns) = &self.namespace {
            g.kube.namespace = ns.clone();
        }
        let (namespace, name) = match self.gateway.as_deref().unwrap_or("mcpgw").split_once('/') {
            Some((ns, n)) => (Some(ns.to_string()), n.to_string()),
            None => (None, self.gateway.clone().unwrap_or_else(|| "mcpgw".into())),
        };
        g.kube.parent_refs.push(model::ParentRef {
            name,
            namespace,
            section_name: self.listener.clone(),
            port: None,
        });
        Ok(())
    }
}

pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// What an input loaded into.
pub struct LoadedInput {
    pub gateway: Gateway,
    pub passthrough: Vec<serde_norway::Value>,
    pub diags: Diagnostics,
}

fn is_json(path: &Path, text: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        || text.trim_start().starts_with('{')
}

pub fn load_input(
    input: &Input,
    check: EnvCheck,
    mode: mcproute::Mode,
    env: mcp_config::Env,
) -> Result<LoadedInput, String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))
    };
    if let Some(p) = &input.mcp_config {
        let text = read(p)?;
        let (gateway, diags) = mcp_config::load(p, &text, env, check)?;
        return Ok(LoadedInput {
            gateway,
            passthrough: vec![],
            diags,
        });
    }
    if input.files.is_empty() {
        return Err(
            "no input: give an MCPRoute YAML file or --mcp-config FILE (an MCP servers file)"
                .into(),
        );
    }
    let mut texts = Vec::new();
    for p in &input.files {
        texts.push((p.clone(), read(p)?));
    }
    if let [(p, text)] = texts.as_slice() {
        if is_json(p, text) {
            let (gateway, diags) = mcp_config::load(p, text, env, check)?;
            return Ok(LoadedInput {
                gateway,
                passthrough: vec![],
                diags,
            });
        }
    }
    if let Some((p, _)) = texts.iter().find(|(p, t)| is_json(p, t)) {
        return Err(format!(
            "{}: an MCP servers file cannot be combined with other files; give it alone (or with --mcp-config)",
            p.display()
        ));
    }
    let (loaded, diags) = mcproute::load(&texts, env, check, mode)?;
    Ok(LoadedInput {
        gateway: loaded.gateway,
        passthrough: loaded.passthrough,
        diags,
    })
}

pub fn warn_all(diags: &Diagnostics) {
    warn_list(&diags.warnings);
}

pub fn warn_list(warnings: &[String]) {
    for w in warnings {
        eprintln!("mcpgw: warning: {w}");
    }
}

fn main() -> ExitCode {
    // Every HTTP client of the command (JWKS discovery, the startup probe)
    // uses rustls with ring; reqwest is built without a provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if cli.version {
        println!("mcpgw {}", long_version());
        return ExitCode::SUCCESS;
    }
    let result = match cli.command {
        None => {
            eprintln!("mcpgw: no command; try `mcpgw run --mcp-config FILE` or `mcpgw --help`");
            return ExitCode::from(2);
        }
        Some(Command::Check(a)) => cmd_check(&a),
        Some(Command::Render(a)) => cmd_render(&a),
        Some(Command::Run(a)) => run::main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpgw: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything `run` and `render` check, without starting anything.
fn cmd_check(a: &CheckArgs) -> Result<(), String> {
    let mode = if a.kubernetes {
        mcproute::Mode::Kubernetes
    } else {
        mcproute::Mode::Local
    };
    let loaded = load_input(&a.input, EnvCheck::Require, mode, &env_var)?;
    warn_all(&loaded.diags);
    let mut g = loaded.gateway;
    if a.kubernetes {
        a.kube.place(&mut g)?;
    }
    let g = &g;
    // A JWKS to discover is found at run/render time: check with a stand-in.
    let mut checked = g.clone();
    let discover = checked
        .oauth
        .as_mut()
        .filter(|o| o.jwks.is_none())
        .map(|o| {
            o.jwks = Some(model::Jwks::Remote {
                uri: format!("{}/jwks.json", o.issuer.trim_end_matches('/')),
                cache_duration: None,
            });
            discovery::metadata_urls(&o.issuer)
        });
    if a.kubernetes {
        let engine = a.engine.unwrap_or(engine::Engine::Wasm);
        let opts = render_kube::Options::for_check(a.kube.deploy(), engine);
        let r = render_kube::render(&checked, &loaded.passthrough, &opts)?;
        warn_list(&r.warnings);
    } else {
        render_envoy::preflight(&checked)?;
        // Validate with placeholder bridge ports and a placeholder key: the
        // filter checks everything else exactly as in Envoy.
        let filter = engine::Filter {
            engine: engine::DEFAULT,
            path: PathBuf::from(engine::DEFAULT.file_name()),
        };
        let mut opts = render_options(
            &Listen::default_for_check(),
            filter,
            PathBuf::from("ca.pem"),
            false,
        );
        for b in &g.backends {
            if matches!(b.target, model::Target::Stdio(_)) {
                opts.bridge_ports.insert(b.name.clone(), 1);
            }
        }
        let json = plugin::plugin_json(g, false, &|_, b| {
            render_envoy::upstream(b, &opts).unwrap_or_else(|| plugin::Upstream {
                cluster: b.name.clone(),
                authority: None,
                path: "/mcp".into(),
                timeout: None,
            })
        });
        plugin::validate(g, &json, &check_env(g, false))?;
    }
    let stdio = g
        .backends
        .iter()
        .filter(|b| matches!(b.target, model::Target::Stdio(_)))
        .count();
    println!(
        "{}: OK: {} backend(s) ({} stdio) at {}{}",
        g.source,
        g.backends.len(),
        stdio,
        g.path,
        if g.oauth.is_some() {
            ", OAuth (JWT)"
        } else {
            ""
        }
    );
    for b in &g.backends {
        let what = match &b.target {
            model::Target::Http(t) => t.url(),
            model::Target::Stdio(s) => format!("stdio: {} {}", s.command, s.args.join(" ")),
            model::Target::InCluster { backend, path } => {
                format!("Backend {backend} (in the cluster), path {path}")
            }
        };
        println!("  {}: {what}", b.name);
    }
    if let (Some(o), Some(urls)) = (&g.oauth, &discover) {
        println!(
            "  OAuth: the JWKS of {} is discovered when the gateway is run or rendered, from {}",
            o.issuer,
            urls.join(" or ")
        );
    }
    if let Some(p) = &g.authorization {
        let rules = p["rules"].as_array().map_or(0, Vec::len);
        println!(
            "  authorization: {rules} rule(s), default {}",
            p["default"].as_str().unwrap_or("deny")
        );
    }
    Ok(())
}

/// The environment the filter will see, for validation: mcpgw's own
/// environment, a placeholder session key, and the Secret values.
pub fn check_env(g: &Gateway, lenient: bool) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        if name == plugin::SESSION_KEY_VAR || name == plugin::PREVIOUS_SESSION_KEY_VAR {
            return Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into());
        }
        for s in &g.secret_env {
            if s.var == name {
                return match &s.value {
                    model::SecretValue::Literal(v) => Some(v.clone()),
                    _ => env_var(name).or_else(|| Some("placeholder".into())),
                };
            }
        }
        // `render` only warns about variables missing here: they are needed
        // where Envoy runs.
        env_var(name).or_else(|| lenient.then(|| "placeholder".into()))
    }
}

impl Listen {
    fn default_for_check() -> Listen {
        Listen {
            port: 1975,
            admin_port: 1064,
            address: std::net::Ipv4Addr::LOCALHOST.into(),
            ca_file: None,
            access_log: None,
            audit_log: None,
            limit_per_caller: None,
            limit_tool: Vec::new(),
        }
    }
}

pub fn render_options(
    l: &Listen,
    filter: engine::Filter,
    ca_file: PathBuf,
    previous_key: bool,
) -> render_envoy::Options {
    render_envoy::Options {
        address: l.address.to_string(),
        port: l.port,
        admin_port: l.admin_port,
        filter,
        ca_file,
        bridge_ports: Default::default(),
        previous_key,
        access_log: l.access_log.clone(),
        audit_log: l.audit_log.clone(),
    }
}

/// The build `render --kubernetes` renders, where the cluster gets it, and
/// its sha256; contradictory or missing flags are refused with the fix.
fn kube_code(a: &RenderArgs) -> Result<(render_kube::Code, String), String> {
    let engine = a.engine.unwrap_or(engine::Engine::Wasm);
    let wasm_flag = match (&a.wasm_url, &a.wasm_image) {
        (Some(_), _) => Some("--wasm-url"),
        (None, Some(_)) => Some("--wasm-image"),
        (None, None) => None,
    };
    let module_flag = match (&a.module, &a.module_image) {
        (Some(_), _) => Some("--module"),
        (None, Some(_)) => Some("--module-image"),
        (None, None) => None,
    };
    let custom_envoy = a.envoy_image != render_kube::MODULE_ENVOY_IMAGE;
    match engine {
        engine::Engine::Wasm => {
            if let Some(f) = module_flag.or(custom_envoy.then_some("--envoy-image")) {
                return Err(format!(
                    "{f} is for the dynamic module: add --engine module (render --kubernetes renders the wasm build by default), or drop {f} and give --wasm-url URL or --wasm-image REF"
                ));
            }
            let code = match (&a.wasm_url, &a.wasm_image) {
                (Some(u), None) => render_kube::WasmCode::Http(u.clone()),
                (None, Some(i)) => render_kube::WasmCode::Image(i.clone()),
                _ => return Err("render --kubernetes needs --wasm-url URL or --wasm-image REF: where the cluster gets mcpgw.wasm (publish the embedded build; `mcpgw --version` prints its sha256); or --engine module with --module-image REF or --module PATH".into()),
            };
            Ok((code.into(), wasm_sha256()))
        }
        engine::Engine::Module => {
            if let Some(f) = wasm_flag {
                return Err(format!(
                    "{f} is for the wasm build: with --engine module give --module-image REF (an OCI image holding libmcpgw.so) or --module PATH (its path in the Envoy container), or drop --engine module"
                ));
            }
            let source = match (&a.module, &a.module_image) {
                (None, Some(i)) => render_kube::ModuleSource::Image(i.clone()),
                (Some(p), None) => render_kube::ModuleSource::Path(p.display().to_string()),
                _ => return Err("render --kubernetes --engine module needs --module-image REF (an OCI image holding the embedded build's libmcpgw.so at its root; `mcpgw --version` prints its sha256) or --module PATH (where libmcpgw.so already is in the Envoy container)".into()),
            };
            let code = render_kube::ModuleCode {
                source,
                envoy_image: a.envoy_image.clone(),
            };
            Ok((code.into(), engine::Engine::Module.sha256()))
        }
    }
}

fn cmd_render(a: &RenderArgs) -> Result<(), String> {
    let mode = if a.kubernetes {
        mcproute::Mode::Kubernetes
    } else {
        mcproute::Mode::Local
    };
    let mut loaded = load_input(&a.input, EnvCheck::Warn, mode, &env_var)?;
    warn_all(&loaded.diags);
    loaded.gateway.limits = a.listen.limits()?;
    discover_jwks_blocking(&mut loaded.gateway, a.listen.ca_file.as_deref())?;
    if a.kubernetes {
        let (code, sha256) = kube_code(a)?;
        if !loaded.gateway.limits.is_empty() {
            return Err("--limit-per-caller / --limit-tool: not rendered for Kubernetes; use Envoy Gateway's BackendTrafficPolicy rateLimit on the headers x-mcpgw-tool / x-mcpgw-caller (see README)".into());
        }
        a.kube.place(&mut loaded.gateway)?;
        let keys = keys::resolve(
            a.keys.session_key_file.as_deref(),
            a.keys.previous_session_key_file.as_deref(),
            &env_var,
        )?;
        let opts = render_kube::Options {
            code,
            sha256,
            session_key: keys.current,
            previous_key: keys.previous,
            deploy: a.kube.deploy(),
        };
        let out = render_kube::render(&loaded.gateway, &loaded.passthrough, &opts)?;
        warn_list(&out.warnings);
        print!("{}", out.text);
        return Ok(());
    }
    render_envoy::preflight(&loaded.gateway)?;
    let engine = a.engine.unwrap_or(engine::DEFAULT);
    let given = match engine {
        engine::Engine::Module => &a.module,
        engine::Engine::Wasm => &a.wasm,
    };
    let filter = engine::Filter {
        engine,
        path: match given {
            Some(p) => p.clone(),
            None => {
                let p = engine.cache_path();
                engine.write(&p)?;
                p
            }
        },
    };
    let needs_ca = render_envoy::needs_ca(&loaded.gateway);
    let ca = if needs_ca {
        envoy_bin::ca_file(a.listen.ca_file.as_deref())?
    } else {
        a.listen.ca_file.clone().unwrap_or_default()
    };
    let mut opts = render_options(&a.listen, filter, ca, a.previous_session_key);
    opts.access_log.get_or_insert_with(|| "-".into());
    let mut warnings = Vec::new();
    let served = render_envoy::served(&loaded.gateway, &opts, &mut warnings);
    for w in &warnings {
        eprintln!("mcpgw: warning: {w}");
    }
    if served.backends.is_empty() {
        return Err(
            "no backend left that plain Envoy can serve (stdio servers need `mcpgw run`)".into(),
        );
    }
    let yaml = render_envoy::render(&served, &opts);
    let json = plugin::plugin_json(&served, a.previous_session_key, &|_, b| {
        render_envoy::upstream(b, &opts).unwrap_or_else(|| plugin::Upstream {
            cluster: b.name.clone(),
            authority: None,
            path: "/mcp".into(),
            timeout: None,
        })
    });
    plugin::validate(&served, &json, &check_env(&served, true))?;
    print!("{yaml}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use clap::Parser;

    fn render_args(args: &[&str]) -> RenderArgs {
        let mut argv = vec!["mcpgw", "render", "--kubernetes", "route.yaml"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Render(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    fn code(args: &[&str]) -> Result<(render_kube::Code, String), String> {
        kube_code(&render_args(args))
    }

    #[test]
    fn kubernetes_code_flags() {
        // The module, from an image or a path in the Envoy container.
        let (c, sha) = code(&["--engine", "module", "--module-image", "r.example/m:1"]).unwrap();
        assert_eq!(sha, engine::Engine::Module.sha256());
        assert!(matches!(&c, render_kube::Code::Module(m)
            if matches!(&m.source, render_kube::ModuleSource::Image(i) if i == "r.example/m:1")
            && m.envoy_image == render_kube::MODULE_ENVOY_IMAGE));
        let (c, _) = code(&[
            "--engine",
            "module",
            "--module",
            "/opt/mcpgw/libmcpgw.so",
            "--envoy-image",
            "r.example/envoy:1.40",
        ])
        .unwrap();
        assert!(matches!(&c, render_kube::Code::Module(m)
            if matches!(&m.source, render_kube::ModuleSource::Path(p) if p == "/opt/mcpgw/libmcpgw.so")
            && m.envoy_image == "r.example/envoy:1.40"));
        // The wasm stays the default.
        let (c, sha) = code(&["--wasm-url", "https://x.example/mcpgw.wasm"]).unwrap();
        assert_eq!(sha, wasm_sha256());
        assert!(matches!(c, render_kube::Code::Wasm(_)));

        for (args, want) in [
            (
                &["--engine", "module"][..],
                "--engine module needs --module-image REF",
            ),
            (
                &["--engine", "module", "--wasm-url", "https://x/m.wasm"][..],
                "--wasm-url is for the wasm build: with --engine module give --module-image REF",
            ),
            (
                &[
                    "--engine",
                    "module",
                    "--wasm-image",
                    "r/m:1",
                    "--module-image",
                    "r/m:1",
                ][..],
                "--wasm-image is for the wasm build",
            ),
            (
                &["--module-image", "r.example/m:1"][..],
                "--module-image is for the dynamic module: add --engine module",
            ),
            (
                &[
                    "--wasm-url",
                    "https://x/m.wasm",
                    "--module",
                    "/opt/libmcpgw.so",
                ][..],
                "--module is for the dynamic module",
            ),
            (
                &["--wasm-url", "https://x/m.wasm", "--envoy-image", "r/e:1"][..],
                "--envoy-image is for the dynamic module",
            ),
            (&[][..], "needs --wasm-url URL or --wasm-image REF"),
            (
                &["--engine", "wasm"][..],
                "or --engine module with --module-image REF or --module PATH",
            ),
        ] {
            let e = code(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
        // Both sources at once, or the module flags without --kubernetes.
        assert!(Cli::try_parse_from([
            "mcpgw",
            "render",
            "--kubernetes",
            "r.yaml",
            "--engine",
            "module",
            "--module",
            "/a/libmcpgw.so",
            "--module-image",
            "r/m:1",
        ])
        .is_err());
        assert!(
            Cli::try_parse_from(["mcpgw", "render", "r.yaml", "--module-image", "r/m:1"]).is_err()
        );
    }

    #[test]
    fn check_kubernetes_renders_the_module_too() {
        let data = std::env::temp_dir().join(format!("mcpgw-check-{}", std::process::id()));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            data.join("servers.json"),
            r#"{"mcpServers": {"a": {"url": "https://a.example.com/mcp"}}}"#,
        )
        .unwrap();
        std::fs::copy(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/cli/mcproute-full.yaml"),
            data.join("mcproute-full.yaml"),
        )
        .unwrap();
        let check = |engine: &str, file: &str| {
            let file = data.join(file);
            let argv = [
                "mcpgw",
                "check",
                "--kubernetes",
                "--engine",
                engine,
                file.to_str().unwrap(),
            ];
            let Some(Command::Check(a)) = Cli::try_parse_from(argv).unwrap().command else {
                panic!("check")
            };
            cmd_check(&a)
        };
        check("module", "servers.json").unwrap();
        check("wasm", "servers.json").unwrap();
        check("wasm", "mcproute-full.yaml").unwrap();
        // The same rendering, so the same refusal: OAuth needs the wasm here.
        let e = check("module", "mcproute-full.yaml").unwrap_err();
        assert!(e.contains("OAuth with --engine module"), "{e}");
        assert!(Cli::try_parse_from(["mcpgw", "check", "--engine", "module", "x.yaml"]).is_err());
        std::fs::remove_dir_all(&data).unwrap();
    }
}
