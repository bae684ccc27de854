//! `swarm admin list|delete --nats URL`: the JetStream streams a distributed
//! swarm leaves on the server, listed per swarm and deleted with a
//! confirmation.
//!
//! A swarm named `S` owns four streams: its event log `SWARM_S_EVENTS`, its
//! task queue `SWARM_S_TASKS` (with the queue's consumers), its dead letters
//! `SWARM_S_DEAD`, and the stream of its snapshot bucket
//! `KV_SWARM_S_SNAPSHOTS`. The event log denies purges and deleting single
//! messages (so its sequence stays gap-free), but a stream can always be
//! deleted whole, which is what `delete` does.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::json;

use crate::error::CliError;
use crate::output::{print_json, print_stdout};
use crate::{AdminArgs, AdminCommand};

/// The streams of one swarm, by role.
const ROLES: [&str; 4] = ["events", "tasks", "dead", "snapshots"];

/// The swarm and role a stream name belongs to, if it is a swarm's.
fn owner(stream: &str) -> Option<(&str, &'static str)> {
    if let Some(rest) = stream.strip_prefix("KV_SWARM_") {
        return rest.strip_suffix("_SNAPSHOTS").map(|s| (s, "snapshots"));
    }
    let rest = stream.strip_prefix("SWARM_")?;
    for (suffix, role) in [
        ("_EVENTS", "events"),
        ("_TASKS", "tasks"),
        ("_DEAD", "dead"),
    ] {
        if let Some(swarm) = rest.strip_suffix(suffix) {
            return Some((swarm, role));
        }
    }
    None
}

/// The name of `swarm`'s stream in `role`.
fn stream_name(swarm: &str, role: &str) -> String {
    match role {
        "snapshots" => format!("KV_SWARM_{swarm}_SNAPSHOTS"),
        other => format!("SWARM_{swarm}_{}", other.to_ascii_uppercase()),
    }
}

/// One stream of a swarm.
struct Stream {
    name: String,
    messages: u64,
    bytes: u64,
}

/// Every swarm on the server: its streams by role.
async fn swarms(
    js: &jetstream::Context,
    url: &str,
) -> Result<BTreeMap<String, BTreeMap<&'static str, Stream>>, CliError> {
    let failed = |e: &dyn std::fmt::Display| {
        CliError::Runtime(format!("could not list the streams of {url}: {e}"))
    };
    let mut found: BTreeMap<String, BTreeMap<&'static str, Stream>> = BTreeMap::new();
    let mut streams = js.streams();
    while let Some(info) = streams.next().await {
        let info = info.map_err(|e| failed(&e))?;
        let Some((swarm, role)) = owner(&info.config.name) else {
            continue;
        };
        found.entry(swarm.to_owned()).or_default().insert(
            role,
            Stream {
                name: info.config.name.clone(),
                messages: info.state.messages,
                bytes: info.state.bytes,
            },
        );
    }
    Ok(found)
}

async fn connect(url: &str) -> Result<jetstream::Context, CliError> {
    let client = async_nats::connect(swarm_store::nats::server_list(url))
        .await
        .map_err(|e| {
            CliError::Store(swarm::StoreError::Io {
                path: url.into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!("cannot connect to {url}: {e}"),
                ),
            })
        })?;
    Ok(jetstream::new(client))
}

pub(crate) async fn run(args: AdminArgs) -> Result<(), CliError> {
    match args.command {
        AdminCommand::List { nats, json } => list(&nats, json).await,
        AdminCommand::Delete { nats, swarm, yes } => delete(&nats, &swarm, yes).await,
    }
}

async fn list(url: &str, as_json: bool) -> Result<(), CliError> {
    let js = connect(url).await?;
    let found = swarms(&js, url).await?;
    if as_json {
        let swarms: Vec<_> = found
            .iter()
            .map(|(swarm, streams)| {
                let streams: serde_json::Map<_, _> = streams
                    .iter()
                    .map(|(role, s)| {
                        (
                            (*role).to_owned(),
                            json!({"stream": s.name, "messages": s.messages, "bytes": s.bytes}),
                        )
                    })
                    .collect();
                json!({"swarm": swarm, "streams": streams})
            })
            .collect();
        return print_json(&json!({ "swarms": swarms }));
    }
    if found.is_empty() {
        return print_stdout(&format!("no swarm has streams on {url}\n")).map(|_| ());
    }
    let mut text = format!("swarms on {url}\n");
    for (swarm, streams) in &found {
        text.push_str(&format!("\n{swarm}\n"));
        for role in ROLES {
            match streams.get(role) {
                Some(s) => text.push_str(&format!(
                    "  {role:<10} {:<40} {:>10} messages {:>12} bytes\n",
                    s.name, s.messages, s.bytes
                )),
                None => text.push_str(&format!("  {role:<10} (none)\n")),
            }
        }
    }
    print_stdout(&text).map(|_| ())
}

async fn delete(url: &str, swarm: &str, yes: bool) -> Result<(), CliError> {
    let js = connect(url).await?;
    let found = swarms(&js, url).await?;
    let Some(streams) = found.get(swarm) else {
        return Err(CliError::BadInput(format!(
            "no swarm {swarm:?} on {url} (`swarm admin list --nats {url}` shows the swarms there)"
        )));
    };
    let messages: u64 = streams.values().map(|s| s.messages).sum();
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::BadInput(format!(
                "deleting swarm {swarm:?} needs a confirmation: run it in a terminal, or pass --yes"
            )));
        }
        let names: Vec<&str> = streams.values().map(|s| s.name.as_str()).collect();
        eprint!(
            "This deletes swarm {swarm:?} on {url} for good: {} ({messages} messages: its event log, queued and dead-lettered tasks, snapshots).\nType the swarm's name to confirm: ",
            names.join(", ")
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| CliError::Runtime(format!("could not read the confirmation: {e}")))?;
        if answer.trim() != swarm {
            return Err(CliError::BadInput(format!(
                "not confirmed: swarm {swarm:?} is left as it was"
            )));
        }
    }
    let mut deleted = Vec::new();
    for role in ROLES {
        if streams.contains_key(role) {
            let name = stream_name(swarm, role);
            js.delete_stream(&name).await.map_err(|e| {
                CliError::Runtime(format!(
                    "could not delete stream {name} of swarm {swarm:?} (deleted so far: {}): {e}",
                    if deleted.is_empty() {
                        "none".to_owned()
                    } else {
                        deleted.join(", ")
                    }
                ))
            })?;
            deleted.push(name);
        }
    }
    print_stdout(&format!(
        "deleted swarm {swarm:?}: {} ({messages} messages)\n",
        deleted.join(", ")
    ))
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_map_to_their_swarm_and_back() {
        for swarm in ["default", "orders_eu", "a-b_EVENTS"] {
            for role in ROLES {
                assert_eq!(owner(&stream_name(swarm, role)), Some((swarm, role)));
            }
        }
        assert_eq!(owner("ORDERS"), None);
        assert_eq!(owner("KV_other"), None);
        assert_eq!(owner("SWARM_x_OTHER"), None);
    }
}
