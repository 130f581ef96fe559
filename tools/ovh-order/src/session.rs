//! What every verb starts from: the `[ovh]` section, the signed client, the state file
//! path and the output.

use std::path::{Path, PathBuf};

use pimops::cli::CommonArgs;
use pimops::http::{HttpClient, HttpConfig};
use pimops::inventory::{Inventory, Ovh};
use pimops::output::Output;
use pimops::ovh::{Client, Credentials};
use pimops::Result;

pub struct Session {
    pub inventory: Inventory,
    pub ovh: Ovh,
    pub client: Client,
    pub out: Output,
    pub state_path: PathBuf,
}

impl Session {
    /// Load the inventory and the credentials (both needed by every signed verb).
    pub fn open(common: &CommonArgs, state: Option<&Path>) -> Result<Session> {
        let inventory = Inventory::load(&common.config_path())?;
        let ovh = inventory.ovh()?.clone();
        let client = Client::new(ovh.api_url(), Credentials::from_env()?, http());
        let state_path = match state {
            Some(p) => p.to_path_buf(),
            None => inventory.resolve_path(Path::new(&ovh.state_file)),
        };
        Ok(Session {
            client,
            state_path,
            out: Output::stdout(common.format()),
            ovh,
            inventory,
        })
    }
}

/// The HTTP client for OVH: the shared defaults.
pub fn http() -> HttpClient {
    HttpClient::new(HttpConfig::default())
}
