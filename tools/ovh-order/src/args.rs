//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pimops::cli::CommonArgs;

#[derive(Parser, Debug)]
#[command(
    name = "ovh-order",
    version,
    about = "Order the OVH dedicated server and its IPs, wait for delivery, route IPs, reconcile the edge firewall",
    long_about = "Order the OVH dedicated server ([ovh.server]) and additional IPs ([[ovh.ip]]) of the \
inventory: `plan` shows the priced cart, `order --yes` checks it out once (never twice: the state file \
records every order, and a failed checkout is looked up before anything is retried), `wait` follows the \
order to delivery and prints the server. Credentials come from OVH_APPLICATION_KEY, \
OVH_APPLICATION_SECRET and OVH_CONSUMER_KEY (or NAME_FILE), never from the command line."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The state file recording orders [default: [ovh] state_file, next to infra.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub state: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Ask OVH for a consumer key with the access rules ovh-order needs; prints the validation URL
    Credential(CredentialArgs),
    /// Offers and prices in the subsidiary's currency
    Catalog(CatalogArgs),
    /// Build the cart for [ovh.server] and [[ovh.ip]], validate it and show the priced preview (orders nothing)
    Plan,
    /// Check the cart out with the preferred payment method and record the order
    Order(OrderArgs),
    /// Poll an order until it is delivered (status changes on stderr), then print the server
    /// (name, ip, datacenter) on stdout
    Wait(WaitArgs),
    /// Additional IPs: order blocks, route them to a server
    Ip(IpArgs),
    /// Servers, IPs and the recorded orders with their status
    Status,
    /// Reconcile OVH's edge network firewall of one IP with CIDRs from stdin plus the admin sources
    Firewall(FirewallArgs),
}

#[derive(Args, Debug)]
pub struct CredentialArgs {
    /// Where OVH sends the browser after the key is validated
    #[arg(long, value_name = "URL")]
    pub redirect: Option<String>,
}

#[derive(Args, Debug)]
pub struct CatalogArgs {
    /// Only this offer (planCode), with its options
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<String>,
}

#[derive(Args, Debug)]
pub struct OrderArgs {
    /// Really order (it costs money every month); without it the preview is shown and nothing is ordered
    #[arg(long)]
    pub yes: bool,
    /// Order even though a matching order is pending or delivered
    #[arg(long)]
    pub again: bool,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    /// The order id [default: the last order in the state file]
    pub order: Option<u64>,
    /// Give up after this long (exit 75), e.g. "2d"
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<pimops::units::Duration>,
    /// Poll interval [default: [ovh] poll_interval, 30s]
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<pimops::units::Duration>,
}

#[derive(Args, Debug)]
pub struct IpArgs {
    #[command(subcommand)]
    pub command: IpVerb,
}

#[derive(Subcommand, Debug)]
pub enum IpVerb {
    /// Order the [[ovh.ip]] blocks on their own (preview without --yes)
    Order(OrderArgs),
    /// Route an IP block to a server and wait for OVH's task to finish
    Move(MoveArgs),
}

#[derive(Args, Debug)]
pub struct MoveArgs {
    /// The block, e.g. 198.51.100.4/30 (a bare address means /32)
    pub ip: String,
    /// The server's service name, e.g. ns3001234.ip-203-0-113.eu
    #[arg(long, value_name = "SERVER")]
    pub to: String,
    /// Give up waiting for the task after this long (exit 75)
    #[arg(long, value_name = "DURATION", default_value = "30m")]
    pub timeout: pimops::units::Duration,
    /// Task poll interval
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub interval: pimops::units::Duration,
}

#[derive(Args, Debug)]
pub struct FirewallArgs {
    /// The IPv4 address the firewall protects (the server's IP)
    #[arg(long, value_name = "IP")]
    pub ip: std::net::Ipv4Addr,
    /// The IP block the address belongs to [default: IP/32]
    #[arg(long, value_name = "CIDR")]
    pub block: Option<String>,
    /// Read the allowed CIDRs (one per line, `#` comments) from this file, `-` for stdin
    #[arg(long, value_name = "FILE")]
    pub from: Option<String>,
    /// Apply the plan (without it the changes are only shown)
    #[arg(long)]
    pub apply: bool,
}
