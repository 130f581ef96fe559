//! The API's objects, as far as cf-sync reads them. Unknown fields are ignored: the API
//! adds fields over time and a new one must not break a sync.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `result_info` of a list.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct ResultInfo {
    #[serde(default)]
    pub page: u64,
    #[serde(default)]
    pub per_page: u64,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub total_pages: u64,
}

/// One `{code, message}` of an envelope's `errors`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiMessage {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

/// The envelope every answer comes in.
#[derive(Debug, Deserialize)]
pub(super) struct Envelope {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub errors: Vec<ApiMessage>,
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub result_info: Option<ResultInfo>,
}

/// A zone from `GET /zones?name=`.
#[derive(Debug, Clone, Deserialize)]
pub struct Zone {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub status: String,
}

/// A DNS record as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DnsRecord {
    pub id: String,
    /// The FQDN.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
    #[serde(default)]
    pub proxied: bool,
    /// 1 = automatic.
    #[serde(default = "auto_ttl")]
    pub ttl: u32,
    #[serde(default)]
    pub priority: Option<u16>,
    #[serde(default)]
    pub comment: Option<String>,
}

fn auto_ttl() -> u32 {
    1
}

/// One `{id}` of a batch's deletes.
#[derive(Debug, Clone, Serialize)]
pub struct RecordId {
    pub id: String,
}

/// `POST /zones/{id}/dns_records/batch`: one transaction, applied by the API in the order
/// deletes → patches → puts → posts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Batch {
    pub deletes: Vec<RecordId>,
    /// `{id, …fields to change}`.
    pub patches: Vec<Value>,
    /// `{id, …every field}`.
    pub puts: Vec<Value>,
    /// New records.
    pub posts: Vec<Value>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.deletes.len() + self.patches.len() + self.puts.len() + self.posts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Split into batches of at most `limit` changes, keeping the global order
    /// deletes → patches → puts → posts across them (a delete that frees a name always
    /// lands before the post that takes it).
    pub fn chunks(self, limit: usize) -> Vec<Batch> {
        let limit = limit.max(1);
        let mut out: Vec<Batch> = Vec::new();
        let mut cur = Batch::default();
        let push = |cur: &mut Batch, out: &mut Vec<Batch>| {
            if cur.len() >= limit {
                out.push(std::mem::take(cur));
            }
        };
        for d in self.deletes {
            push(&mut cur, &mut out);
            cur.deletes.push(d);
        }
        for p in self.patches {
            push(&mut cur, &mut out);
            cur.patches.push(p);
        }
        for p in self.puts {
            push(&mut cur, &mut out);
            cur.puts.push(p);
        }
        for p in self.posts {
            push(&mut cur, &mut out);
            cur.posts.push(p);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}

/// What a batch did, in the same four lists.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BatchResult {
    #[serde(default)]
    pub deletes: Vec<Value>,
    #[serde(default)]
    pub patches: Vec<Value>,
    #[serde(default)]
    pub puts: Vec<Value>,
    #[serde(default)]
    pub posts: Vec<DnsRecord>,
}

/// A phase entrypoint ruleset. Rules stay raw JSON so that rules another owner made are
/// written back exactly as they were read.
#[derive(Debug, Clone, Deserialize)]
pub struct Ruleset {
    pub id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub rules: Vec<Value>,
}

/// One zone setting.
#[derive(Debug, Clone, Deserialize)]
pub struct Setting {
    pub id: String,
    #[serde(default)]
    pub value: Value,
}

/// `GET /ips`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct IpRanges {
    pub ipv4_cidrs: Vec<String>,
    pub ipv6_cidrs: Vec<String>,
    #[serde(default)]
    pub etag: String,
}

/// `POST /certificates`: an Origin CA certificate request. The CSR carries only the public
/// key; the private key stays with the caller.
#[derive(Debug, Clone, Serialize)]
pub struct OriginCertRequest {
    /// PEM.
    pub csr: String,
    /// FQDNs in the account's zones, or `*.` + one of them.
    pub hostnames: Vec<String>,
    /// `origin-rsa` or `origin-ecc`.
    pub request_type: String,
    /// Days: 7, 30, 90, 365, 730, 1095 or 5475.
    pub requested_validity: u32,
}

/// An Origin CA certificate as `POST /certificates` returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct OriginCert {
    pub id: String,
    /// PEM.
    pub certificate: String,
    #[serde(default)]
    pub expires_on: String,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub request_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_the_order_and_the_limit() {
        let mut b = Batch::default();
        for i in 0..3 {
            b.deletes.push(RecordId {
                id: format!("d{i}"),
            });
        }
        for i in 0..2 {
            b.patches.push(serde_json::json!({ "id": format!("p{i}") }));
        }
        for i in 0..2 {
            b.posts.push(serde_json::json!({ "n": i }));
        }
        let chunks = b.chunks(3);
        let sizes: Vec<(usize, usize, usize)> = chunks
            .iter()
            .map(|c| (c.deletes.len(), c.patches.len(), c.posts.len()))
            .collect();
        assert_eq!(sizes, [(3, 0, 0), (0, 2, 1), (0, 0, 1)]);
        assert!(Batch::default().chunks(200).is_empty());
    }
}
