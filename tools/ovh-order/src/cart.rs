//! Building the cart for what the inventory orders, validating every configuration value
//! against what OVH allows for the offer, and the priced preview. Nothing here orders.

use pimops::inventory::Ovh;
use pimops::output::Record;
use pimops::ovh::Client;
use pimops::{Error, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What one cart orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `[ovh.server]` with its options, and every `[[ovh.ip]]`.
    Server,
    /// Only the `[[ovh.ip]]` blocks (`ip order`).
    Ips,
}

impl Scope {
    pub fn kind(self) -> &'static str {
        match self {
            Scope::Server => "server",
            Scope::Ips => "ip",
        }
    }
}

/// The configuration ordered, as JSON with a fixed key order: what [`config_hash`] hashes.
pub fn wanted(ovh: &Ovh, scope: Scope) -> Value {
    let ips: Vec<Value> = ovh
        .ip
        .iter()
        .map(|ip| json!({"plan": ip.plan, "country": ip.country, "region": ip.region, "duration": ip.duration}))
        .collect();
    let server = match (scope, &ovh.server) {
        (Scope::Server, Some(s)) => {
            json!({"plan": s.plan, "datacenter": s.datacenter, "duration": s.duration,
                                          "options": s.options, "os": s.os, "region": s.region})
        }
        _ => Value::Null,
    };
    json!({"kind": scope.kind(), "subsidiary": ovh.subsidiary, "server": server, "ip": ips})
}

/// `sha256:<hex>` of the ordered configuration: equal hashes mean the same purchase.
pub fn config_hash(ovh: &Ovh, scope: Scope) -> String {
    let digest = Sha256::digest(wanted(ovh, scope).to_string().as_bytes());
    format!("sha256:{}", hex::encode(digest))
}

/// A filled cart and its priced preview (`GET /order/cart/{id}/checkout`).
pub struct Cart {
    pub id: String,
    pub preview: Value,
}

/// Create, assign and fill a cart; every refusal is a configuration error naming the key.
pub fn build(client: &Client, ovh: &Ovh, project: &str, scope: Scope) -> Result<Cart> {
    let server = match scope {
        Scope::Server => Some(ovh.server.as_ref().ok_or_else(|| {
            Error::config("no [ovh.server] in the inventory: nothing to order (ip order orders [[ovh.ip]] alone)")
        })?),
        Scope::Ips => None,
    };
    if scope == Scope::Ips && ovh.ip.is_empty() {
        return Err(Error::config(
            "no [[ovh.ip]] in the inventory: nothing to order",
        ));
    }
    let cart: Value = client.post(
        "/order/cart",
        Some(&json!({"ovhSubsidiary": ovh.subsidiary, "description": format!("pimops {project}")})),
    )?;
    let id = str_field(&cart, "cartId", "POST /order/cart")?;
    let base = format!("/order/cart/{}", pimops::ovh::escape(&id));
    client.post::<Value, Value>(&format!("{base}/assign"), None)?;
    log::debug!("cart {id} created and assigned");

    if let Some(s) = server {
        let offers: Vec<Value> = client.get(&format!("{base}/baremetalServers"))?;
        let offer = find_plan(&offers, &s.plan).ok_or_else(|| {
            Error::config(format!(
                "ovh.server.plan: {:?} is not offered to subsidiary {}: offered {}",
                s.plan,
                ovh.subsidiary,
                plan_list(&offers)
            ))
        })?;
        let mode = pricing_mode(offer, &s.duration).ok_or_else(|| {
            Error::config(format!(
                "ovh.server.duration: {:?} is not offered for plan {}: offered {}",
                s.duration,
                s.plan,
                durations(offer)
            ))
        })?;
        let item: Value = client.post(
            &format!("{base}/baremetalServers"),
            Some(&json!({"planCode": s.plan, "duration": s.duration, "pricingMode": mode, "quantity": 1})),
        )?;
        let item_id = item_id(&item)?;
        if !s.options.is_empty() {
            let path = format!(
                "{base}/baremetalServers/options?planCode={}",
                pimops::ovh::escape(&s.plan)
            );
            let options: Vec<Value> = client.get(&path)?;
            for option in &s.options {
                let o = find_plan(&options, option).ok_or_else(|| {
                    Error::config(format!(
                        "ovh.server.options: {option:?} is not an option of plan {}: offered {}",
                        s.plan,
                        plan_list(&options)
                    ))
                })?;
                let mode = pricing_mode(o, &s.duration).unwrap_or_else(|| "default".into());
                client.post::<Value, Value>(
                    &format!("{base}/baremetalServers/options"),
                    Some(
                        &json!({"itemId": item_id, "planCode": option, "duration": s.duration,
                                 "pricingMode": mode, "quantity": 1}),
                    ),
                )?;
            }
        }
        let values = [
            (
                "dedicated_datacenter",
                "ovh.server.datacenter",
                Some(s.datacenter.as_str()),
            ),
            ("dedicated_os", "ovh.server.os", Some(s.os.as_str())),
            ("region", "ovh.server.region", s.region.as_deref()),
        ];
        configure(client, &base, item_id, &s.plan, &values)?;
    }

    if !ovh.ip.is_empty() {
        let offers: Vec<Value> = client.get(&format!("{base}/ip"))?;
        for (i, ip) in ovh.ip.iter().enumerate() {
            let key = format!("ovh.ip[{i}]");
            let offer = find_plan(&offers, &ip.plan).ok_or_else(|| {
                Error::config(format!(
                    "{key}.plan: {:?} is not offered to subsidiary {}: offered {}",
                    ip.plan,
                    ovh.subsidiary,
                    plan_list(&offers)
                ))
            })?;
            let mode = pricing_mode(offer, &ip.duration).ok_or_else(|| {
                Error::config(format!(
                    "{key}.duration: {:?} is not offered for {}: offered {}",
                    ip.duration,
                    ip.plan,
                    durations(offer)
                ))
            })?;
            let item: Value = client.post(
                &format!("{base}/ip"),
                Some(&json!({"planCode": ip.plan, "duration": ip.duration, "pricingMode": mode, "quantity": 1})),
            )?;
            let values = [
                (
                    "country",
                    format!("{key}.country"),
                    Some(ip.country.as_str()),
                ),
                ("region", format!("{key}.region"), ip.region.as_deref()),
            ];
            let values: Vec<(&str, &str, Option<&str>)> = values
                .iter()
                .map(|(l, k, v)| (*l, k.as_str(), *v))
                .collect();
            configure(client, &base, item_id(&item)?, &ip.plan, &values)?;
        }
    }

    let preview: Value = client.get(&format!("{base}/checkout"))?;
    Ok(Cart { id, preview })
}

/// Set every configuration OVH requires for the item, each checked against its allowed
/// values first, so a datacenter not offered for the plan is a clear error here.
fn configure(
    client: &Client,
    base: &str,
    item_id: u64,
    plan: &str,
    values: &[(&str, &str, Option<&str>)],
) -> Result<()> {
    let path = format!("{base}/item/{item_id}/requiredConfiguration");
    let required: Vec<Value> = client.get(&path)?;
    for req in &required {
        let Some(label) = req["label"].as_str() else {
            continue;
        };
        let known = values.iter().find(|(l, _, _)| *l == label);
        let value = match known {
            Some((_, _, Some(v))) => *v,
            _ if req["required"].as_bool() == Some(false) => continue,
            Some((_, key, None)) => {
                return Err(Error::config(format!(
                    "{key}: plan {plan} requires the configuration {label:?}: set it"
                )))
            }
            None => {
                return Err(Error::config(format!(
                    "plan {plan} requires the configuration {label:?}, which ovh-order does not know how to set"
                )))
            }
        };
        let allowed: Vec<&str> = req["allowedValues"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !allowed.is_empty() && !allowed.contains(&value) {
            let key = known.map(|(_, k, _)| *k).unwrap_or(label);
            return Err(Error::config(format!(
                "{key}: {value:?} is not offered for plan {plan}: offered {}",
                allowed.join(", ")
            )));
        }
        client.post::<Value, Value>(
            &format!("{base}/item/{item_id}/configuration"),
            Some(&json!({"label": label, "value": value})),
        )?;
    }
    Ok(())
}

fn find_plan<'a>(offers: &'a [Value], plan: &str) -> Option<&'a Value> {
    offers.iter().find(|o| o["planCode"].as_str() == Some(plan))
}

fn plan_list(offers: &[Value]) -> String {
    let plans: Vec<&str> = offers
        .iter()
        .filter_map(|o| o["planCode"].as_str())
        .collect();
    if plans.is_empty() {
        "none".into()
    } else {
        plans.join(", ")
    }
}

/// The pricing mode of the offer's price for `duration`, `default` preferred.
fn pricing_mode(offer: &Value, duration: &str) -> Option<String> {
    let prices = offer["prices"].as_array()?;
    let modes: Vec<&str> = prices
        .iter()
        .filter(|p| p["duration"].as_str() == Some(duration))
        .filter_map(|p| p["pricingMode"].as_str())
        .collect();
    modes
        .iter()
        .find(|m| **m == "default")
        .or(modes.first())
        .map(|m| m.to_string())
}

fn durations(offer: &Value) -> String {
    let mut d: Vec<&str> = offer["prices"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["duration"].as_str()).collect())
        .unwrap_or_default();
    d.dedup();
    if d.is_empty() {
        "none".into()
    } else {
        d.join(", ")
    }
}

fn item_id(item: &Value) -> Result<u64> {
    item["itemId"]
        .as_u64()
        .ok_or_else(|| Error::failed(format!("OVH API: a cart item without an itemId: {item}")))
}

pub fn str_field(v: &Value, key: &str, what: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::failed(format!("OVH API {what}: no {key:?} in the answer")))
}

/// `text` of an OVH price object (`89.99 €`), or its value.
pub fn price_text(p: &Value) -> String {
    match p["text"].as_str() {
        Some(t) => t.to_string(),
        None => p["value"].to_string(),
    }
}

/// The records of a preview: one per item, one per contract, then the totals.
pub fn preview_records(cart: &Cart, hash: &str) -> Vec<Record> {
    let p = &cart.preview;
    let mut out = Vec::new();
    for d in p["details"].as_array().into_iter().flatten() {
        out.push(
            Record::new("item")
                .with("description", d["description"].clone())
                .with("quantity", d["quantity"].clone())
                .with("price_without_tax", price_text(&d["totalPrice"])),
        );
    }
    for c in p["contracts"].as_array().into_iter().flatten() {
        out.push(
            Record::new("contract")
                .with("name", c["name"].clone())
                .with("url", c["url"].clone()),
        );
    }
    let prices = &p["prices"];
    out.push(
        Record::new("preview")
            .with("cart_id", cart.id.clone())
            .with("price_without_tax", price_text(&prices["withoutTax"]))
            .with("tax", price_text(&prices["tax"]))
            .with("price_with_tax", price_text(&prices["withTax"]))
            .with("currency", prices["withTax"]["currencyCode"].clone())
            .with("config_hash", hash),
    );
    out
}

/// One line of the human preview.
pub fn human(r: &Record) -> String {
    let s = |k: &str| match r.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    match r.kind() {
        "item" => format!("  {:<60} {:>14}", s("description"), s("price_without_tax")),
        "contract" => format!("  contract: {} <{}>", s("name"), s("url")),
        "preview" => format!(
            "total: {} without tax + {} tax = {} (cart {})",
            s("price_without_tax"),
            s("tax"),
            s("price_with_tax"),
            s("cart_id")
        ),
        _ => r.to_json_line(),
    }
}
