//! `catalog` (offers and prices from a cart of the subsidiary) and `credential` (a
//! consumer key with the least access ovh-order needs).

use pimops::inventory::Inventory;
use pimops::output::{Output, Record};
use pimops::ovh::{escape, Client};
use pimops::{secrets, Result};
use serde_json::{json, Value};

use crate::args::{CatalogArgs, CredentialArgs};
use crate::cart::{price_text, str_field};
use crate::session::{http, Session};

/// The access rules every verb needs, and nothing else.
pub fn access_rules() -> Vec<Value> {
    let mut rules = Vec::new();
    for (methods, paths) in [
        (&["GET", "POST", "PUT", "DELETE"][..], &["/order/*"][..]),
        (&["GET", "POST"][..], &["/me/order", "/me/order/*"][..]),
        (
            &["GET"][..],
            &["/dedicated/server", "/dedicated/server/*"][..],
        ),
        (&["GET", "POST", "PUT", "DELETE"][..], &["/ip", "/ip/*"][..]),
    ] {
        for m in methods {
            for p in paths {
                rules.push(json!({"method": m, "path": p}));
            }
        }
    }
    rules
}

pub fn credential(common: &pimops::cli::CommonArgs, args: &CredentialArgs) -> Result<u8> {
    let inv = Inventory::load(&common.config_path())?;
    let ovh = inv.ovh()?;
    let client = Client::application_only(
        ovh.api_url(),
        secrets::require("OVH_APPLICATION_KEY")?,
        http(),
    );
    let mut body = json!({"accessRules": access_rules()});
    if let Some(r) = &args.redirect {
        body["redirection"] = json!(r);
    }
    let answer: Value = client.post("/auth/credential", Some(&body))?;
    let key = str_field(&answer, "consumerKey", "POST /auth/credential")?;
    let rec = Record::new("credential")
        .with("consumer_key", key.clone())
        .with("state", answer["state"].clone())
        .with("validation_url", answer["validationUrl"].clone());
    let mut out = Output::stdout(common.format());
    out.emit(&rec, |r| {
        format!(
            "consumer key {key} ({}): open {} to validate it, then store it in OVH_CONSUMER_KEY_FILE (chmod 600)",
            r.get("state").and_then(Value::as_str).unwrap_or("?"),
            r.get("validation_url").and_then(Value::as_str).unwrap_or("?")
        )
    })?;
    Ok(0)
}

pub fn catalog(s: &mut Session, args: &CatalogArgs) -> Result<u8> {
    let cart: Value = s.client.post(
        "/order/cart",
        Some(&json!({"ovhSubsidiary": s.ovh.subsidiary, "description": "pimops catalog"})),
    )?;
    let base = format!(
        "/order/cart/{}",
        escape(&str_field(&cart, "cartId", "POST /order/cart")?)
    );
    let servers: Vec<Value> = s.client.get(&format!("{base}/baremetalServers"))?;
    for o in servers.iter().filter(|o| {
        args.plan
            .as_deref()
            .is_none_or(|p| o["planCode"].as_str() == Some(p))
    }) {
        emit_prices(&mut s.out, "offer", o, None)?;
        if let (Some(_), Some(plan)) = (&args.plan, o["planCode"].as_str()) {
            let opts: Vec<Value> = s.client.get(&format!(
                "{base}/baremetalServers/options?planCode={}",
                escape(plan)
            ))?;
            for opt in &opts {
                emit_prices(&mut s.out, "option", opt, Some(plan))?;
            }
        }
    }
    if args.plan.is_none() {
        let ips: Vec<Value> = s.client.get(&format!("{base}/ip"))?;
        for o in &ips {
            emit_prices(&mut s.out, "ip-offer", o, None)?;
        }
    }
    Ok(0)
}

fn emit_prices(out: &mut Output, kind: &str, offer: &Value, parent: Option<&str>) -> Result<()> {
    for p in offer["prices"].as_array().into_iter().flatten() {
        let mut rec = Record::new(kind)
            .with("plan", offer["planCode"].clone())
            .with("product", offer["productName"].clone())
            .with("duration", p["duration"].clone())
            .with("pricing_mode", p["pricingMode"].clone())
            .with("price", price_text(&p["price"]))
            .with("currency", p["price"]["currencyCode"].clone());
        if let Some(parent) = parent {
            rec.set("for", parent);
        }
        out.emit(&rec, |r| {
            let t = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            format!(
                "{:<10} {:<28} {:<5} {:<10} {}",
                kind,
                t("plan"),
                t("duration"),
                t("pricing_mode"),
                t("price")
            )
        })?;
    }
    Ok(())
}
