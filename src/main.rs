//! The `wxgate` command: parse the CLI, load the config, set up logging, bind, run.

#[cfg(feature = "dev-tools")]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use wxgate::config::Config;

/// Authentication gateway for WeChat mini-programs: wx.login() code -> signed JWT -> reverse proxy
/// that hands upstreams a trustworthy X-OpenId.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = ENDPOINTS)]
struct Cli {
    /// The TOML config file; every key can be overridden by WXGATE_<SECTION>__<KEY>
    /// (e.g. WXGATE_WECHAT__SECRET, WXGATE_JWT__SECRET).
    #[arg(
        long,
        global = true,
        env = "WXGATE_CONFIG",
        default_value = "config/wxgate.toml"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

/// The gateway's own endpoints, listed under `--help`.
const ENDPOINTS: &str = "\
Endpoints (paths configurable):
  POST /login[/<app>]           login code (wx/qq/tt/swan/ks.login) -> {token, openid, platform}
                                of [wechat], [wechat.apps.NAME] or [apps.NAME]   [login] path
  POST /token/refresh           Bearer token -> a new token for the same login   [login] refresh_path
  POST /logout                  Bearer token -> login ended, its tokens revoked  [login] logout_path
  POST /wx/decrypt              Bearer token + {encryptedData, iv} -> user data
  POST /wx/phone                Bearer token + {code} -> phone_info (getuserphonenumber)
  POST /wx/session/check        Bearer token -> {valid}: session_key still current (checksession)
  ANY  /auth[/<original path>]  forward-auth check for nginx, Traefik, Envoy     [forward_auth] path
  GET  /.well-known/jwks.json   public keys of RS256/ES256/EdDSA tokens
  every other path              proxied per [[routes]], X-OpenId and X-Platform from a valid
                                bearer token
WeChat API listener ([wechat_api] listen; off unless set; loopback and [wechat_api] allow only):
  GET|POST /<app>/<wechat path>  a WeChat server API, with the gateway's access_token added
Admin listener ([admin] listen, default 127.0.0.1:9090; never the public port):
  GET  /metrics                 Prometheus text format
  GET  /healthz  /readyz        liveness; readiness (store reachable, not shutting down)
Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the config file (invalid: refused, the
running config keeps serving) and the TLS certificates.
Full reference: README.md and the commented config/wxgate.toml.";

/// `wxgate mock-wechat push`: WeChat's message push, made and sent as WeChat does.
#[cfg(feature = "dev-tools")]
#[derive(Subcommand)]
enum MockAction {
    /// Push one message to a gateway's push URL ([wechat.push]), signed (and encrypted) as
    /// WeChat does it; prints the gateway's status and answer.
    Push {
        /// The push URL, e.g. http://127.0.0.1:8080/wx/push.
        #[arg(long)]
        to: String,
        /// The console's Token ([wechat.push] token).
        #[arg(long, env = "WXGATE_MOCK_PUSH_TOKEN", hide_env_values = true)]
        token: String,
        /// The console's EncodingAESKey (not needed with --mode plain).
        #[arg(
            long,
            env = "WXGATE_MOCK_PUSH_AES_KEY",
            hide_env_values = true,
            default_value = ""
        )]
        aes_key: String,
        /// The app's appid, sealed into encrypted messages.
        #[arg(long)]
        appid: String,
        /// safe, compatible or plain.
        #[arg(long, default_value = "safe")]
        mode: String,
        /// json or xml.
        #[arg(long, default_value = "json")]
        format: String,
        /// The message, in the format (default: a user's text message with a fresh MsgId).
        #[arg(long, default_value = "")]
        message: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the config and print it resolved, with secrets redacted.
    Check,
    /// Serve a fake WeChat API for offline development, speaking QQ's, Douyin's, Baidu's,
    /// Kuaishou's and Alipay's APIs too (`push`: send a message push instead).
    #[cfg(feature = "dev-tools")]
    #[command(
        args_conflicts_with_subcommands = true,
        visible_alias = "mock-platforms"
    )]
    MockWechat {
        /// What else the mock does.
        #[command(subcommand)]
        action: Option<MockAction>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9200")]
        listen: SocketAddr,
        /// Answer 40013 unless called with this appid (default: accept any).
        #[arg(long, requires = "secret")]
        appid: Option<String>,
        /// Answer 40125 unless called with this AppSecret (default: accept any).
        #[arg(
            long,
            env = "WXGATE_MOCK_SECRET",
            hide_env_values = true,
            requires = "appid"
        )]
        secret: Option<String>,
    },
    /// Make development TLS certificates: a private CA and a server certificate it signs.
    GenCert {
        /// Folder to write dev-ca.pem, server.pem (chain) and server-key.pem into.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Names and addresses the certificate is valid for, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
        hosts: Vec<String>,
        /// Key type of the server certificate: ecdsa, ed25519 or rsa.
        #[arg(long, default_value = "ecdsa")]
        key_type: wxgate::tls::dev::KeyType,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Start a self-contained demo: mock WeChat + echo upstream + gateway, no config needed.
    #[cfg(feature = "dev-tools")]
    Demo {
        /// Address the demo gateway listens on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Mint a token with the configured signing key, to call a backend through the gateway
    /// without a mini-program. Prints the token alone: TOKEN=$(wxgate token --openid o1).
    /// It belongs to no login: it cannot be refreshed, and a logout cannot end it.
    Token {
        /// The user's openid: the token's `sub`, X-OpenId upstream.
        #[arg(long)]
        openid: String,
        /// Lifetime: seconds, or with a unit (90s, 15m, 2h, 7d).
        #[arg(long, default_value = "1h", value_parser = parse_duration_secs)]
        ttl: u64,
        /// The user's unionid, X-UnionId upstream.
        #[arg(long)]
        unionid: Option<String>,
        /// The mini-program the user belongs to: "default" ([wechat]) or NAME ([wechat.apps.NAME],
        /// [apps.NAME]).
        #[arg(long, default_value = "default")]
        app: String,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `wxgate completions bash > /etc/bash_completion.d/wxgate`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("cannot start the runtime: {error}")),
    };
    runtime.block_on(async {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => run_gateway(&cli.config).await,
            Command::Check => match Config::load(&cli.config)
                .and_then(|config| Ok((wxgate::server::check(&config)?, config)))
            {
                Ok((kids, config)) => {
                    print!("{}", config.to_redacted_toml());
                    println!("\n# JWT key ids (configured or derived from the keys), signing key first: {kids:?}");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(format!("invalid config: {error}")),
            },
            #[cfg(feature = "dev-tools")]
            Command::MockWechat {
                action: Some(MockAction::Push {
                    to,
                    token,
                    aes_key,
                    appid,
                    mode,
                    format,
                    message,
                }),
                ..
            } => mock_push(to, token, aes_key, appid, (&mode, &format), message).await,
            #[cfg(feature = "dev-tools")]
            Command::MockWechat {
                action: None,
                listen,
                appid,
                secret,
            } => {
                use wxgate::mock_wechat::MockWeChat;
                init_logging("info");
                let mock = match appid.zip(secret) {
                    Some((appid, secret)) => MockWeChat::with_credentials(appid, secret),
                    None => MockWeChat::new(),
                };
                let listener = match TcpListener::bind(listen).await {
                    Ok(listener) => listener,
                    Err(error) => return fail(format!("cannot listen on {listen}: {error}")),
                };
                let address = listener.local_addr().map_or(listen, |address| address);
                println!("mock WeChat on http://{address} (set [wechat] api_base to it)");
                exit_code(mock.serve(listener, shutdown_signal()).await)
            }
            Command::GenCert {
                out,
                hosts,
                key_type,
                force,
            } => match wxgate::tls::dev::write_dev_certificates(&out, &hosts, key_type, force) {
                Ok(paths) => {
                    for path in paths {
                        println!("wrote {}", path.display());
                    }
                    println!("Use server.pem / server-key.pem as [server.tls] cert_file / key_file; clients trust dev-ca.pem.");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(error),
            },
            Command::Token {
                openid,
                ttl,
                unionid,
                app,
            } => mint_token(&cli.config, openid, ttl, unionid, &app),
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "wxgate", &mut std::io::stdout());
                ExitCode::SUCCESS
            }
            #[cfg(feature = "dev-tools")]
            Command::Demo { listen } => {
                init_logging("info");
                match TcpListener::bind(listen).await {
                    Ok(listener) => exit_code(wxgate::demo::run(listener, shutdown_signal()).await),
                    Err(error) => fail(format!("cannot listen on {listen}: {error}")),
                }
            }
        }
    })
}

async fn run_gateway(config_path: &std::path::Path) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(error) => return fail(format!("invalid config: {error}")),
    };
    // Held to the end of the function: its drop writes out the last log lines.
    let log_output = wxgate::logging::BatchedStderr::start();
    if let Err(error) =
        wxgate::logging::init(&config.log.level, config.log.format, log_output.clone())
    {
        eprintln!("wxgate: logging not set up: {error}");
    }
    let public = match TcpListener::bind(config.server.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            return fail(format!(
                "cannot listen on {}: {error}",
                config.server.listen
            ))
        }
    };
    let admin = if config.admin.enabled {
        match TcpListener::bind(config.admin.listen).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                return fail(format!(
                    "cannot listen on {} ([admin] listen): {error}",
                    config.admin.listen
                ))
            }
        }
    } else {
        None
    };
    if let Some(address) = config.server.redirect_http_listen {
        let redirects = match TcpListener::bind(address).await {
            Ok(redirects) => redirects,
            Err(error) => return fail(format!("cannot listen on {address}: {error}")),
        };
        let https_port = config.server.listen.port();
        tokio::spawn(wxgate::server::redirect_to_https(
            redirects,
            https_port,
            shutdown_signal(),
        ));
    }
    let wechat_api = match config.wechat_api.listen {
        Some(address) => match TcpListener::bind(address).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                return fail(format!(
                    "cannot listen on {address} ([wechat_api] listen): {error}"
                ))
            }
        },
        None => None,
    };
    let listeners = wxgate::server::Listeners {
        public,
        admin,
        wechat_api,
    };
    exit_code(wxgate::server::run(listeners, config, shutdown_signal()).await)
}

/// `wxgate token`: a token the running gateway (same config) accepts, printed on stdout.
fn mint_token(
    config_path: &std::path::Path,
    openid: String,
    ttl_secs: u64,
    unionid: Option<String>,
    app: &str,
) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(error) => return fail(format!("invalid config: {error}")),
    };
    let Some(app) = config.wechat.app_named(app) else {
        return fail(format!(
            "--app {app:?} is not \"default\", a [wechat.apps.NAME] or an [apps.NAME]"
        ));
    };
    let identity = wxgate::auth::Identity {
        openid,
        unionid,
        appid: Some(app.appid.clone()),
        platform: app.platform,
    };
    let keys = match wxgate::token::TokenKeys::load(&config.jwt) {
        Ok(keys) => keys,
        Err(error) => return fail(format!("invalid config: {error}")),
    };
    let issued = match keys.issue_without_session(&identity, ttl_secs) {
        Ok(issued) => issued,
        Err(error) => return fail(error.to_string()),
    };
    // Refused here rather than by the gateway later: what it would not accept is not printed.
    if let Err(error) = keys.verify(&issued.token) {
        return fail(format!("this token would be refused: {error}"));
    }
    println!("{}", issued.token);
    eprintln!(
        "wxgate: token for {} (app {}), expires in {} s",
        identity.openid, app.name, issued.expires_in
    );
    ExitCode::SUCCESS
}

/// A lifetime in seconds: `3600`, or a number with a unit (`90s`, `15m`, `2h`, `7d`).
fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    match number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
    {
        Some(0) | None => Err(format!("{text:?} is not a positive duration")),
        Some(secs) => Ok(secs),
    }
}

/// The dev tools' logging: text lines at `level` on stderr (the gateway takes its own from the
/// config).
#[cfg(feature = "dev-tools")]
fn init_logging(level: &str) {
    let format = wxgate::logging::LogFormat::Text;
    if let Err(error) = wxgate::logging::init(level, format, std::io::stderr) {
        eprintln!("wxgate: logging not set up: {error}");
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(error) => {
                    eprintln!("wxgate: cannot listen for SIGTERM: {error}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn exit_code(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error.to_string()),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("wxgate: {message}");
    ExitCode::from(2)
}

/// `wxgate mock-wechat push`: one message push, sent as WeChat sends it.
#[cfg(feature = "dev-tools")]
async fn mock_push(
    to: String,
    token: String,
    encoding_aes_key: String,
    appid: String,
    (mode, format): (&str, &str),
    message: String,
) -> ExitCode {
    use wxgate::config::{PushFormat, PushMode};
    let mode = match mode {
        "safe" => PushMode::Safe,
        "compatible" => PushMode::Compatible,
        "plain" => PushMode::Plain,
        other => return fail(format!("--mode {other:?} is not safe, compatible or plain")),
    };
    let format = match format {
        "json" => PushFormat::Json,
        "xml" => PushFormat::Xml,
        other => return fail(format!("--format {other:?} is not json or xml")),
    };
    let push = wxgate::mock_wechat::MockPush {
        to,
        token,
        encoding_aes_key,
        appid,
        mode,
        format,
        message,
    };
    match push.send().await {
        Ok((status, answer)) => {
            println!("{status} {answer}");
            if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => fail(error),
    }
}
