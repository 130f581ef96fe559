//! What the hv-provision test files share.

use pimops_test_support::hyperv_simulator::FixedCode;

/// hv-provision's bootstrap and scripts: the only code the simulated host runs.
pub fn hv_code() -> FixedCode {
    FixedCode::new(
        pimops::hyperv::wire::BOOTSTRAP,
        pimops::hyperv::scripts::ALL
            .iter()
            .map(|s| (s.name, s.text)),
    )
}
