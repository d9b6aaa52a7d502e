//! `kith run`: the node daemon. Opens the stores, serves the local API, stops cleanly on
//! SIGINT/SIGTERM, joins the family's network (see [`crate::net`]), and empties the trash of
//! photos trashed 30 days ago (see [`crate::purge`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{self, ApiInfo};
use crate::datadir::{DataDir, write_private_file};
use crate::error::{Error, Result};
use crate::library::Library;
use crate::net::{NetConfig, Network};

/// The name of the person who runs this machine, for a first start without `kith init`
/// ("me" when the user name breaks the rule of names).
pub fn os_user_name() -> String {
    ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|k| {
            std::env::var(k)
                .ok()
                .filter(|v| kith_protocol::names::check_name(v).is_ok())
        })
        .unwrap_or_else(|| "me".to_owned())
}

/// This machine's host name, the default device name; "this device" when the host name breaks
/// the rule of names (a container's host name is often 12 hex digits, like an id).
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| kith_protocol::names::check_name(h).is_ok())
        .unwrap_or_else(|| "this device".to_owned())
}

/// Runs the node until a shutdown signal arrives.
pub async fn run(
    data_dir: &DataDir,
    api_addr: Option<SocketAddr>,
    net_config: NetConfig,
) -> Result<()> {
    if let Some(addr) = api_addr {
        check_loopback(addr)?;
    }
    data_dir.create()?;
    // Held until this function returns: from here on, commands wait for this node's API
    // instead of opening the library.
    let _node_lock = data_dir.hold_node_lock()?;
    // What a node that did not stop cleanly left: no client may take it for this one.
    let _ = std::fs::remove_file(data_dir.api_file());
    let _ = std::fs::remove_file(data_dir.token_file());
    if !data_dir.db_file().exists() {
        let name = os_user_name();
        let init = Library::init(data_dir, &name, &host_name()).await?;
        tracing::info!(
            "{} was not set up: created device {} for {name:?} in a new family (rename later)",
            init.data_dir,
            init.device_id
        );
        eprintln!(
            "kith: set up {} for {name:?} (device {}) in a new family",
            init.data_dir, init.device_id
        );
    }
    let library = open_when_free(data_dir).await?;
    let purge = crate::purge::spawn(library.clone());
    let check = {
        let library = library.clone();
        tokio::spawn(async move {
            match library.check_stored_changes().await {
                Ok(0) => tracing::info!("every stored change checked"),
                Ok(n) => {
                    tracing::error!("{n} stored changes failed their check (see `kith status`)")
                }
                Err(e) => tracing::warn!("the stored changes could not be checked: {e}"),
            }
        })
    };
    let net = Network::start(library.clone(), net_config).await?;
    for addr in net.listen_addrs() {
        eprintln!("kith: listening for family devices on {addr}");
    }
    let addr = api_addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Invalid(format!("cannot listen on {addr} for the local API: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(Error::io("cannot read the API address", data_dir.root()))?;
    let token = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 32]>());
    write_private_file(&data_dir.token_file(), token.as_bytes())?;
    let info = ApiInfo {
        addr: bound.to_string(),
        pid: std::process::id(),
    };
    let info_json = serde_json::to_vec(&info).map_err(|e| Error::Invalid(e.to_string()))?;
    write_private_file(&data_dir.api_file(), &info_json)?;
    tracing::info!(api = %bound, data_dir = %data_dir.root().display(), "kith node running");
    eprintln!("kith: node running, local API on http://{bound} (Ctrl-C stops it)");

    let app = api::router(library.clone(), net, token);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    let _ = std::fs::remove_file(data_dir.api_file());
    let _ = std::fs::remove_file(data_dir.token_file());
    purge.abort();
    check.abort();
    library.close().await;
    tracing::info!("kith node stopped");
    served.map_err(|e| Error::Invalid(format!("the local API failed: {e}")))
}

/// How long `kith run` waits for commands that have the library open (a long `kith import`
/// run without the node, say) before it gives up.
const WAIT_FOR_COMMANDS: Duration = Duration::from_secs(600);

/// Opens the library, waiting while commands that opened it before this node took
/// `node.lock` still have it; no new one opens it now (see [`crate::datadir`]).
async fn open_when_free(data_dir: &DataDir) -> Result<Arc<Library>> {
    let started = Instant::now();
    let mut said = false;
    loop {
        match Library::open(data_dir).await {
            Err(Error::Locked(_)) if started.elapsed() < WAIT_FOR_COMMANDS => {
                if !said {
                    eprintln!(
                        "kith: waiting for another kith command to finish with {} …",
                        data_dir.root().display()
                    );
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// The local API answers only this machine: it controls the whole library, and its bearer token
/// would cross a network in plain HTTP.
fn check_loopback(addr: SocketAddr) -> Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "--api {addr}: the local API listens only on this machine (127.0.0.1 or [::1]); \
         other devices reach the node through the family's network, not the API"
    )))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received");
}
