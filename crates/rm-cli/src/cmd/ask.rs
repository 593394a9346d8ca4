//! `rm ask`: show or set the provider's ask.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::cmd::parse_amount;
use crate::output::{self, Output};
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

/// Prints the ask, after storing the values given (the running provider must be stopped:
/// the database is one process's).
pub async fn run(global: &Global, out: &Output, args: AskArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    let node = home::open(&home, &[]).await?;
    let provider = node.provider(config.provider_config()?).await?;
    let mut ask = provider.ask();
    let changed = args.price_per_byte.is_some()
        || args.payment_interval.is_some()
        || args.interval_increase.is_some()
        || args.unseal_price.is_some();
    if let Some(p) = &args.price_per_byte {
        ask.price_per_byte = parse_amount(p)?;
    }
    if let Some(p) = &args.unseal_price {
        ask.unseal_price = parse_amount(p)?;
    }
    if let Some(i) = args.payment_interval {
        ask.payment_interval = i;
    }
    if let Some(i) = args.interval_increase {
        ask.payment_interval_increase = i;
    }
    if changed {
        provider.set_ask(ask.clone())?;
    }
    provider.stop().await;
    node.network.shutdown().await;
    out.result(
        &json!({
            "price_per_byte": ask.price_per_byte.atto().to_string(),
            "unseal_price": ask.unseal_price.atto().to_string(),
            "payment_interval": ask.payment_interval,
            "payment_interval_increase": ask.payment_interval_increase,
            "changed": changed,
        }),
        &format!(
            "price per byte     {}\nunseal price       {}\npayment interval   {} bytes\ninterval increase  {} bytes\n",
            ask.price_per_byte.display_atto(),
            ask.unseal_price.display_atto(),
            output::thousands(ask.payment_interval),
            output::thousands(ask.payment_interval_increase),
        ),
    );
    Ok(exit::code(exit::OK))
}
