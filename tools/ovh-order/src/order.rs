//! `plan`, `order` and `ip order`: the priced preview, then one checkout at most.
//!
//! The checkout is not idempotent. It is sent once; when the answer is lost (a timeout, a
//! reset, a 5xx) the order may still have been placed, so the tool compares the account's
//! recent orders with the list taken just before the checkout and records what appeared,
//! instead of trying again.

use std::collections::BTreeSet;
use std::time::Duration;

use pimops::output::Record;
use pimops::ovh::Client;
use pimops::{Error, ErrorKind, Result};
use serde_json::{json, Value};

use crate::args::OrderArgs;
use crate::cart::{self, Scope};
use crate::session::Session;
use crate::state::{self, OrderRecord, State};

/// Statuses after which the same purchase may be made again.
const ENDED: &[&str] = &["cancelled", "cancelling"];

/// `plan`: build and preview the cart; orders nothing.
pub fn plan(s: &mut Session) -> Result<u8> {
    let hash = cart::config_hash(&s.ovh, Scope::Server);
    let cart = cart::build(&s.client, &s.ovh, s.inventory.project(), Scope::Server)?;
    for r in cart::preview_records(&cart, &hash) {
        s.out.emit(&r, cart::human)?;
    }
    Ok(0)
}

/// `order` / `ip order`.
pub fn order(s: &mut Session, args: &OrderArgs, scope: Scope) -> Result<u8> {
    if let Some(parent) = s.state_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(Error::config(format!(
                "state file {}: directory {} does not exist",
                s.state_path.display(),
                parent.display()
            )));
        }
    }
    let _lock = state::lock(&s.state_path)?;
    let hash = cart::config_hash(&s.ovh, scope);
    let mut st = State::load(&s.state_path)?;
    settle_uncertain(s, &mut st, &hash, scope, args.again)?;
    refuse_matching(&s.client, &st, &hash, scope, args.again)?;

    let cart = cart::build(&s.client, &s.ovh, s.inventory.project(), scope)?;
    for r in cart::preview_records(&cart, &hash) {
        s.out.emit(&r, cart::human)?;
    }
    let total = cart::price_text(&cart.preview["prices"]["withTax"]);
    if !args.yes {
        return Err(Error::usage(format!(
            "not ordered: this costs {total} (with tax) per period; run again with --yes to order it"
        )));
    }

    let since = ovh_now(&s.client)? - chrono::Duration::minutes(10);
    let before = recent_orders(&s.client, since)?;
    let path = format!("/order/cart/{}/checkout", pimops::ovh::escape(&cart.id));
    let body = json!({"autoPayWithPreferredPaymentMethod": true, "waiveRetractationPeriod": true});
    log::info!("checking out cart {} ({total})", cart.id);
    let records = match s.client.post::<Value, Value>(&path, Some(&body)) {
        Ok(order) => vec![record_from(&order, scope, &hash, "checkout")?],
        Err(e) if e.kind() == ErrorKind::Unavailable => {
            log::warn!("checkout answer lost ({e}); looking the order up instead of retrying");
            let checkout_at = ovh_now(&s.client)?;
            match recover(&s.client, since, &before, scope, &hash)? {
                Some(records) => records,
                None => {
                    // Not in the list yet is not "not ordered": OVH may list it later.
                    // Recorded, so that no later run checks out again before it is settled.
                    st.uncertain.push(state::UncertainCheckout {
                        kind: scope.kind().into(),
                        config_hash: hash.clone(),
                        listed_from: rfc3339(since),
                        checkout_at: rfc3339(checkout_at),
                        orders_before: before.iter().copied().collect(),
                        cause: e.to_string(),
                    });
                    st.save(&s.state_path)?;
                    return Err(Error::unavailable(format!(
                        "checkout: {e}; no new order has appeared in /me/order yet. Recorded as an \
                         uncertain checkout in {}: the next `order` looks for its order first and \
                         orders again only when none has appeared {} minutes after it",
                        s.state_path.display(),
                        SETTLE.num_minutes()
                    )));
                }
            }
        }
        Err(e) => return Err(e.context("checkout")),
    };
    st.orders.extend(records.iter().cloned());
    st.save(&s.state_path)?;
    for r in &records {
        s.out.emit(&order_record(r), |r| {
            format!(
                "ordered: order {} for {} <{}>",
                r.get("order_id").map(Value::to_string).unwrap_or_default(),
                r.get("price_with_tax")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                r.get("url").and_then(Value::as_str).unwrap_or("")
            )
        })?;
    }
    if records.len() > 1 {
        return Err(Error::failed(format!(
            "{} new orders appeared during the checkout (recorded all): check them in the OVH manager",
            records.len()
        )));
    }
    Ok(0)
}

/// A recorded order of the same configuration that is pending or delivered blocks a new
/// one, unless `--again`.
fn refuse_matching(
    client: &Client,
    st: &State,
    hash: &str,
    scope: Scope,
    again: bool,
) -> Result<()> {
    for rec in st
        .orders
        .iter()
        .rev()
        .filter(|o| o.config_hash == hash && o.kind == scope.kind())
    {
        let status: String = client.get(&format!("/me/order/{}/status", rec.order_id))?;
        if ENDED.contains(&status.as_str()) {
            continue;
        }
        if again {
            log::warn!(
                "order {} of this configuration is {status}; ordering again (--again)",
                rec.order_id
            );
            return Ok(());
        }
        return Err(Error::failed(format!(
            "order {} of this configuration ({}) is {status} since {}: not ordering twice \
             (wait for it with `ovh-order wait {}`; --again orders another)",
            rec.order_id, rec.price_with_tax, rec.ordered_at, rec.order_id
        )));
    }
    Ok(())
}

/// OVH's clock (the order dates are OVH's).
fn ovh_now(client: &Client) -> Result<chrono::DateTime<chrono::Utc>> {
    let ts = pimops::ovh::sign::local_now() + client.clock_delta()?;
    chrono::DateTime::from_timestamp(ts, 0)
        .ok_or_else(|| Error::failed(format!("OVH's time {ts} is out of range")))
}

fn recent_orders(client: &Client, since: chrono::DateTime<chrono::Utc>) -> Result<BTreeSet<u64>> {
    let from = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ids: Vec<u64> = client.get(&format!(
        "/me/order?date.from={}",
        pimops::ovh::escape(&from)
    ))?;
    Ok(ids.into_iter().collect())
}

/// How long after a lost checkout answer its order may still appear in `/me/order`; past
/// this, an order that has not appeared was not placed.
const SETTLE: chrono::Duration = chrono::Duration::minutes(10);

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_time(field: &str, text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            Error::data(format!(
                "state file: uncertain checkout {field} {text:?}: {e}"
            ))
        })
}

/// Settle the earlier lost checkouts of this configuration before anything is ordered:
/// an order that appeared since is recorded (and then blocks a new one like any other); a
/// checkout younger than [`SETTLE`] whose order has not appeared blocks with 75; an older
/// one is dropped. `--again` drops them all, as it overrides a recorded order.
fn settle_uncertain(
    s: &Session,
    st: &mut State,
    hash: &str,
    scope: Scope,
    again: bool,
) -> Result<()> {
    let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut st.uncertain)
        .into_iter()
        .partition(|u| u.config_hash == hash && u.kind == scope.kind());
    st.uncertain = others;
    if mine.is_empty() {
        return Ok(());
    }
    let now = ovh_now(&s.client)?;
    let mut waiting = None;
    for u in mine {
        let since = parse_time("listed_from", &u.listed_from)?;
        let before: BTreeSet<u64> = u.orders_before.iter().copied().collect();
        let known: BTreeSet<u64> = st.orders.iter().map(|o| o.order_id).collect();
        let found = appeared(&s.client, since, &before, scope, hash)?;
        let found: Vec<OrderRecord> = found
            .into_iter()
            .filter(|r| !known.contains(&r.order_id))
            .collect();
        if !found.is_empty() {
            for r in &found {
                log::warn!(
                    "the uncertain checkout of {} did place order {}: recorded it",
                    u.checkout_at,
                    r.order_id
                );
            }
            st.orders.extend(found);
            continue;
        }
        let checkout_at = parse_time("checkout_at", &u.checkout_at)?;
        if again {
            log::warn!(
                "no order has appeared for the uncertain checkout of {}; ordering anyway (--again)",
                u.checkout_at
            );
        } else if now < checkout_at + SETTLE {
            waiting = Some((u.checkout_at.clone(), rfc3339(checkout_at + SETTLE)));
            st.uncertain.push(u);
        } else {
            log::info!(
                "no order appeared within {} minutes of the uncertain checkout of {}: it placed none",
                SETTLE.num_minutes(),
                u.checkout_at
            );
        }
    }
    st.save(&s.state_path)?;
    match waiting {
        Some((at, until)) => Err(Error::temporary(format!(
            "the checkout of {at} got no answer and its order has not appeared in /me/order yet: \
             not ordering before {until} (OVH's time), when it counts as not placed; check the OVH \
             manager, or --again to order regardless"
        ))),
        None => Ok(()),
    }
}

/// The orders of the account that appeared since `before` was listed from `since`.
fn appeared(
    client: &Client,
    since: chrono::DateTime<chrono::Utc>,
    before: &BTreeSet<u64>,
    scope: Scope,
    hash: &str,
) -> Result<Vec<OrderRecord>> {
    recent_orders(client, since)?
        .difference(before)
        .map(|id| {
            let order: Value = client.get(&format!("/me/order/{id}"))?;
            let mut rec = record_from(&order, scope, hash, "lookup")?;
            rec.order_id = *id;
            Ok(rec)
        })
        .collect()
}

/// After a lost checkout answer: the orders that appeared since the list taken before it,
/// or `None` when none has appeared after a few looks.
fn recover(
    client: &Client,
    since: chrono::DateTime<chrono::Utc>,
    before: &BTreeSet<u64>,
    scope: Scope,
    hash: &str,
) -> Result<Option<Vec<OrderRecord>>> {
    // An order can take a moment to show in the list.
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(2));
        }
        let found = appeared(client, since, before, scope, hash)?;
        if found.is_empty() {
            continue;
        }
        for r in &found {
            log::warn!("the checkout did place order {}: recorded it", r.order_id);
        }
        return Ok(Some(found));
    }
    Ok(None)
}

/// A state record from a checkout answer or a `GET /me/order/{id}`.
fn record_from(order: &Value, scope: Scope, hash: &str, from: &str) -> Result<OrderRecord> {
    let order_id = order["orderId"]
        .as_u64()
        .ok_or_else(|| Error::failed(format!("OVH API: an order without an orderId: {order}")))?;
    let (with, without) = if order["prices"].is_object() {
        (&order["prices"]["withTax"], &order["prices"]["withoutTax"])
    } else {
        (&order["priceWithTax"], &order["priceWithoutTax"])
    };
    Ok(OrderRecord {
        order_id,
        kind: scope.kind().into(),
        url: order["url"].as_str().unwrap_or_default().into(),
        price_with_tax: cart::price_text(with),
        price_without_tax: cart::price_text(without),
        ordered_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        config_hash: hash.into(),
        recorded_from: from.into(),
        service: None,
    })
}

pub fn order_record(r: &OrderRecord) -> Record {
    Record::new("order")
        .with("order_id", r.order_id)
        .with("kind", r.kind.clone())
        .with("url", r.url.clone())
        .with("price_with_tax", r.price_with_tax.clone())
        .with("price_without_tax", r.price_without_tax.clone())
        .with("ordered_at", r.ordered_at.clone())
        .with("config_hash", r.config_hash.clone())
        .with("recorded_from", r.recorded_from.clone())
}
