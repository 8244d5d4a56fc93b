//! `switchboard status`: the cluster at a glance, from the bus: edges and
//! their sockets, workers and the partitions each holds, each partition's
//! backlog. It needs the nodes' bus and partition count, and changes nothing
//! there: it declares no stream, bucket or consumer.

use std::fmt::Write;

use switchboard_bus::roster::Roster;
use switchboard_bus::subjects::Family;

use super::settings::Settings;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Print the figures as one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    settings: Settings,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let settings = args.settings.resolve()?;
    let bus = settings.observer_bus("status").await?;
    let roster = Roster::read(bus.as_ref(), settings.partitions()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&roster)?);
    } else {
        print!("{}", text(&roster));
    }
    Ok(())
}

fn text(roster: &Roster) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "edges: {} ({} sockets)", roster.edges.len(), roster.sockets());
    for edge in &roster.edges {
        let _ = writeln!(out, "  {:<24} {} sockets", edge.node, edge.sockets);
    }
    let _ = writeln!(out, "workers: {}", roster.workers.len());
    for worker in &roster.workers {
        let owns: Vec<String> = worker.owns.iter().map(u32::to_string).collect();
        let _ = writeln!(
            out,
            "  {:<8} {:<24} {} partitions: {}",
            worker.kind,
            worker.node,
            owns.len(),
            owns.join(" ")
        );
    }
    let _ = writeln!(out, "partitions:");
    for kind in Family::ALL.map(Family::kind) {
        let of_kind: Vec<_> = roster.partitions.iter().filter(|p| p.kind == kind).collect();
        let unowned: Vec<String> =
            of_kind.iter().filter(|p| p.owner.is_none()).map(|p| p.partition.to_string()).collect();
        let backlog: u64 = of_kind.iter().filter_map(|p| p.backlog).sum();
        let busiest: Vec<String> = of_kind
            .iter()
            .filter(|p| p.backlog.is_some_and(|b| b > 0))
            .map(|p| format!("{}:{}", p.partition, p.backlog.unwrap_or_default()))
            .collect();
        let _ = writeln!(
            out,
            "  {kind:<8} {} partitions, backlog {backlog}{}{}",
            of_kind.len(),
            if busiest.is_empty() { String::new() } else { format!(" ({})", busiest.join(" ")) },
            if unowned.is_empty() { String::new() } else { format!("; unowned: {}", unowned.join(" ")) },
        );
    }
    out
}
