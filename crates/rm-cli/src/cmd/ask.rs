//! `rm ask`: show or set the provider's ask.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use rm_node::control::api::{AskChange, AskView};

use crate::cmd::parse_amount;
use crate::output::{self, Output, node_error};
use crate::{Global, exit, home};

/// New values; none shows the current ask.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// Price per byte of block data, in attoFIL (or "0.5 FIL").
    #[arg(long)]
    pub price_per_byte: Option<String>,
    /// Bytes sent before the first payment is due.
    #[arg(long)]
    pub payment_interval: Option<u64>,
    /// How much each later interval grows, in bytes.
    #[arg(long)]
    pub interval_increase: Option<u64>,
    /// Price of unsealing, paid before any data, in attoFIL.
    #[arg(long)]
    pub unseal_price: Option<String>,
}

/// Prints the ask, after storing the values given. While `rm serve` runs, the running
/// provider takes the new ask at once: the next query and deal see it, deals under way
/// keep the terms they were accepted with.
pub async fn run(global: &Global, out: &Output, args: AskArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    let change = AskChange {
        price_per_byte: args
            .price_per_byte
            .as_deref()
            .map(parse_amount)
            .transpose()?,
        unseal_price: args.unseal_price.as_deref().map(parse_amount).transpose()?,
        payment_interval: args.payment_interval,
        payment_interval_increase: args.interval_increase,
    };
    let session = home::session(&home, config).await?;
    let ask = session.ask(change).await;
    session.close().await;
    let ask = ask.map_err(node_error)?;
    out.result(&serde_json::to_value(&ask)?, &text(&ask));
    Ok(exit::code(exit::OK))
}

fn text(ask: &AskView) -> String {
    format!(
        "price per byte     {}\nunseal price       {}\npayment interval   {} bytes\ninterval increase  {} bytes\n",
        ask.price_per_byte.display_atto(),
        ask.unseal_price.display_atto(),
        output::thousands(ask.payment_interval),
        output::thousands(ask.payment_interval_increase),
    )
}
