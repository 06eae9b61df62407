//! `kabench doctor`: the probe of a live Ollama; the first Ctrl-C puts back what it
//! found, a second skips that.

use anyhow::Result;

use super::BadInput;
use super::signal::interrupt;
use crate::cli::{DoctorArgs, DoctorKind};
use crate::doctor::{self, Stop, cli::Invocation};

pub(super) async fn doctor(args: DoctorArgs) -> Result<()> {
    let invocation = Invocation {
        target: args.target,
        model: args.model,
        embed_model: args.embed_model,
        json: args.json,
        dry_run: args.dry_run,
        allow_evict: args.allow_evict,
        llama_server: args.target_kind == DoctorKind::LlamaServer,
        many: match args.target_kind {
            DoctorKind::LlamaRouter => Some(crate::llama::ServerKind::LlamaRouter),
            DoctorKind::LlamaSwap => Some(crate::llama::ServerKind::LlamaSwap),
            _ => None,
        },
        pid: args.pid,
        max_wait: args.max_wait,
    };
    let stop = Stop::default();
    let (first, second) = (stop.stop.clone(), stop.abandon.clone());
    let listener = tokio::spawn(async move {
        if interrupt().await {
            eprintln!("\ninterrupted: putting back what the doctor found (Ctrl-C again to skip)…");
            first.cancel();
            if interrupt().await {
                second.cancel();
            }
        }
    });
    let result = doctor::cli::command(invocation, &stop).await;
    listener.abort();
    result.map_err(|e| {
        if e.is::<doctor::ModelMissing>()
            || e.is::<doctor::cli::BadTarget>()
            || e.is::<doctor::cli::BadFlag>()
            || e.is::<doctor::http::Redirected>()
        {
            BadInput(format!("{e:#}")).into()
        } else {
            e
        }
    })
}
