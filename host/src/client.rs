//! The admin API client behind `edge deploy|list|remove|rollback`.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;

use crate::api::AppLimits;
use crate::api::{
    AppView, AuditEntry, AuditVerification, DeployReply, KeyPage, ModelsView, TokenCreated,
    TokenRequest, TokenView,
};
use crate::auth;
use crate::auth::Role;

/// Chunk size of deploy uploads (progress granularity).
const UPLOAD_CHUNK: usize = 64 * 1024;

pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// What a deploy asks for besides the component file.
#[derive(Debug, Clone, Copy)]
pub struct DeployOptions<'a> {
    pub route: Option<&'a str>,
    pub env: &'a [(String, String)],
    /// Grant a key-value namespace.
    pub kv: bool,
    /// Grant these models of the node's registry.
    pub models: &'a [String],
    /// Run the component's init function at deploy when it has one.
    pub snapshot: bool,
    /// wasi:config values; sent in a header, never in the URL.
    pub config: &'a BTreeMap<String, String>,
    /// Origins the app may send HTTP requests to.
    pub outbound: &'a [String],
    /// `BROKER:PATTERN`s the app is triggered by.
    pub subscribe: &'a [String],
    /// `BROKER:PATTERN`s the app may publish to.
    pub publish: &'a [String],
    /// Limits over the node's defaults.
    pub limits: &'a AppLimits,
    /// Instance reuse.
    pub reuse: &'a crate::api::Reuse,
}

impl AdminClient {
    /// `token` wins; else the token file of the local node under `data_dir`. `ca_file` is
    /// trusted, besides the public web roots, for an `https://` node.
    pub fn new(
        node: &str,
        token: Option<String>,
        data_dir: &Path,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let token = match token {
            Some(token) => token,
            None => auth::read_token_file(&auth::token_path(data_dir))?.with_context(|| {
                format!(
                    "no admin token: pass --token, set EDGE_TOKEN, or run this next to the \
                     node's data folder ({} not found; use --data-dir)",
                    auth::token_path(data_dir).display()
                )
            })?,
        };
        Ok(Self {
            base: node.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .use_preconfigured_tls(crate::tls::client_config(ca_file)?)
                .build()
                .context("building the HTTP client")?,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|err| {
                let cause = std::error::Error::source(&err)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                anyhow::anyhow!(
                    "cannot reach the node's admin API at {}: is `edge serve` running there, and \
                 for https:// does --ca-file name the CA of its certificate? ({err}{cause})",
                    self.base
                )
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        bail!("the node refused ({status}): {message}")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// URL of an app's bucket or key; segments are percent-encoded, so keys may hold `/`.
    fn kv_url(&self, app: &str, bucket: &str, key: Option<&str>) -> anyhow::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&self.url("/v1/apps"))
            .with_context(|| format!("invalid node URL {}", self.base))?;
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| anyhow::anyhow!("invalid node URL {}", self.base))?;
            segments.extend([app, "kv", bucket]);
            if let Some(key) = key {
                segments.push(key);
            }
        }
        Ok(url)
    }

    pub async fn kv_list(&self, app: &str, bucket: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut request = self.http.get(self.kv_url(app, bucket, None)?);
            if let Some(after) = &after {
                request = request.query(&[("after", after)]);
            }
            let page: KeyPage = self.send(request).await?.json().await?;
            keys.extend(page.keys);
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(keys),
            }
        }
    }

    pub async fn kv_get(&self, app: &str, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        let response = self
            .send(self.http.get(self.kv_url(app, bucket, Some(key))?))
            .await?;
        Ok(response.bytes().await?.to_vec())
    }

    pub async fn kv_set(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> anyhow::Result<()> {
        self.send(
            self.http
                .put(self.kv_url(app, bucket, Some(key))?)
                .body(value),
        )
        .await?;
        Ok(())
    }

    pub async fn kv_delete(&self, app: &str, bucket: &str, key: &str) -> anyhow::Result<()> {
        self.send(self.http.delete(self.kv_url(app, bucket, Some(key))?))
            .await?;
        Ok(())
    }

    pub async fn deploy(
        &self,
        name: &str,
        file: &Path,
        options: &DeployOptions<'_>,
    ) -> anyhow::Result<DeployReply> {
        let DeployOptions {
            route,
            env,
            kv,
            models,
            snapshot,
            config,
            outbound,
            subscribe,
            publish,
            limits,
            reuse,
        } = *options;
        // `oci://…`: the node pulls the component itself; nothing is uploaded.
        let source = file
            .to_str()
            .filter(|text| crate::oci::OciRef::looks_like(text));
        let bytes = match source {
            Some(_) => Vec::new(),
            None => std::fs::read(file)
                .with_context(|| format!("cannot read component file {}", file.display()))?,
        };
        let total = bytes.len();
        let progress = match source {
            Some(reference) => Progress::pulling(name, reference),
            None => Progress::new(name, total),
        };
        let waiting = progress.compile_ticker();
        let chunks: Vec<Vec<u8>> = bytes.chunks(UPLOAD_CHUNK).map(<[u8]>::to_vec).collect();
        let mut sent = 0usize;
        let stream = futures_util::stream::iter(chunks).map(move |chunk| {
            sent += chunk.len();
            progress.uploaded(sent);
            Ok::<_, std::io::Error>(chunk)
        });
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(source) = source {
            query.push(("source", source.to_string()));
        }
        if let Some(route) = route {
            query.push(("route", route.to_string()));
        }
        for (key, value) in env {
            query.push(("env", format!("{key}={value}")));
        }
        if kv {
            query.push(("kv", "true".to_string()));
        }
        for model in models {
            query.push(("model", model.clone()));
        }
        for origin in outbound {
            query.push(("allow_outbound", origin.clone()));
        }
        for pattern in subscribe {
            query.push(("subscribe", pattern.clone()));
        }
        for pattern in publish {
            query.push(("publish", pattern.clone()));
        }
        if !snapshot {
            query.push(("snapshot", "false".to_string()));
        }
        let AppLimits {
            memory_mib,
            timeout_ms,
            concurrency,
            max_body_bytes,
            kv_quota_mib,
            kv_buckets,
        } = limits;
        let default_reuse = crate::api::Reuse::default();
        for (key, value, default) in [
            (
                "reuse",
                u64::from(reuse.requests),
                u64::from(default_reuse.requests),
            ),
            (
                "reuse_concurrency",
                u64::from(reuse.concurrency),
                u64::from(default_reuse.concurrency),
            ),
            ("reuse_idle_ms", reuse.idle_ms, default_reuse.idle_ms),
        ] {
            if value != default {
                query.push((key, value.to_string()));
            }
        }
        for (key, value) in [
            ("memory_mib", *memory_mib),
            ("timeout_ms", *timeout_ms),
            ("concurrency", concurrency.map(|c| c as u64)),
            ("max_body_bytes", *max_body_bytes),
            ("kv_quota_mib", *kv_quota_mib),
            ("kv_buckets", kv_buckets.map(|c| c as u64)),
        ] {
            if let Some(value) = value {
                query.push((key, value.to_string()));
            }
        }
        let mut request = self
            .http
            .put(self.url(&format!("/v1/apps/{name}")))
            .query(&query);
        if !config.is_empty() {
            let json = serde_json::to_vec(config).context("encoding config values")?;
            request = request.header(crate::api::CONFIG_HEADER, hex::encode(json));
        }
        let request = request
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .header(reqwest::header::CONTENT_LENGTH, total)
            .body(reqwest::Body::wrap_stream(stream));
        let response = self.send(request).await;
        waiting.abort();
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
        response?.json().await.context("decoding the deploy reply")
    }

    pub async fn models(&self) -> anyhow::Result<ModelsView> {
        let response = self.send(self.http.get(self.url("/v1/models"))).await?;
        response.json().await.context("decoding the model list")
    }

    pub async fn list(&self) -> anyhow::Result<Vec<AppView>> {
        let response = self.send(self.http.get(self.url("/v1/apps"))).await?;
        response.json().await.context("decoding the app list")
    }

    pub async fn remove(
        &self,
        name: &str,
        delete_data: bool,
    ) -> anyhow::Result<crate::api::RemoveReply> {
        let response = self
            .send(
                self.http
                    .delete(self.url(&format!("/v1/apps/{name}")))
                    .query(&[("delete_data", delete_data)]),
            )
            .await?;
        response.json().await.context("decoding the remove reply")
    }

    pub async fn token_create(&self, name: &str, role: Role) -> anyhow::Result<TokenCreated> {
        let request = TokenRequest {
            name: name.to_string(),
            role,
        };
        let response = self
            .send(self.http.post(self.url("/v1/tokens")).json(&request))
            .await?;
        response.json().await.context("decoding the new token")
    }

    pub async fn token_list(&self) -> anyhow::Result<Vec<TokenView>> {
        let response = self.send(self.http.get(self.url("/v1/tokens"))).await?;
        response.json().await.context("decoding the token list")
    }

    pub async fn token_revoke(&self, name: &str) -> anyhow::Result<TokenView> {
        let response = self
            .send(self.http.delete(self.url(&format!("/v1/tokens/{name}"))))
            .await?;
        response.json().await.context("decoding the revoke reply")
    }

    pub async fn usage(
        &self,
        app: Option<&str>,
        since_secs: Option<u64>,
    ) -> anyhow::Result<Vec<crate::api::UsageView>> {
        let mut request = self.http.get(self.url("/v1/usage"));
        if let Some(app) = app {
            request = request.query(&[("app", app)]);
        }
        if let Some(since) = since_secs {
            request = request.query(&[("since", since)]);
        }
        let response = self.send(request).await?;
        response.json().await.context("decoding the usage report")
    }

    /// A page of an app's log lines after `after`; waits up to `wait_s` for one when none.
    pub async fn logs(
        &self,
        app: &str,
        after: u64,
        since_ms: u64,
        wait_s: u64,
    ) -> anyhow::Result<crate::api::LogPage> {
        let response = self
            .send(
                self.http
                    .get(self.url(&format!("/v1/apps/{app}/logs")))
                    .query(&[("after", after), ("since_ms", since_ms), ("wait", wait_s)]),
            )
            .await?;
        response.json().await.context("decoding the log lines")
    }

    pub async fn audit(&self, limit: usize) -> anyhow::Result<Vec<AuditEntry>> {
        let response = self
            .send(
                self.http
                    .get(self.url("/v1/audit"))
                    .query(&[("limit", limit)]),
            )
            .await?;
        response.json().await.context("decoding the audit log")
    }

    pub async fn audit_verify(&self) -> anyhow::Result<AuditVerification> {
        let response = self
            .send(self.http.get(self.url("/v1/audit/verify")))
            .await?;
        response.json().await.context("decoding the verification")
    }

    pub async fn rollback(&self, name: &str) -> anyhow::Result<AppView> {
        let response = self
            .send(
                self.http
                    .post(self.url(&format!("/v1/apps/{name}/rollback"))),
            )
            .await?;
        response.json().await.context("decoding the rollback reply")
    }
}

/// Upload and compile progress on stderr: a live line on a terminal, two plain lines otherwise.
struct Progress {
    total: usize,
    live: bool,
    started: Instant,
    /// Set when the last byte was handed to the connection.
    uploaded: std::sync::Arc<tokio::sync::Notify>,
}

impl Progress {
    fn new(name: &str, total: usize) -> Self {
        eprintln!("uploading {name} ({})", human_size(total as u64));
        Self {
            total,
            live: std::io::stderr().is_terminal(),
            started: Instant::now(),
            uploaded: std::sync::Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Nothing to upload: the node pulls `reference` itself, then compiles.
    fn pulling(name: &str, reference: &str) -> Self {
        eprintln!("the node pulls {name} from {reference}, then validates and compiles it...");
        let progress = Self {
            total: 0,
            live: std::io::stderr().is_terminal(),
            started: Instant::now(),
            uploaded: std::sync::Arc::new(tokio::sync::Notify::new()),
        };
        progress.uploaded.notify_one();
        progress
    }

    /// On a terminal, counts the seconds the node spends validating, compiling and
    /// snapshotting, from the end of the upload until the task is aborted.
    fn compile_ticker(&self) -> tokio::task::JoinHandle<()> {
        let (live, uploaded) = (self.live, self.uploaded.clone());
        tokio::spawn(async move {
            if !live {
                return;
            }
            uploaded.notified().await;
            let started = Instant::now();
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                eprint!(
                    "\r  working on the node: {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
        })
    }

    fn uploaded(&self, sent: usize) {
        let mut err = std::io::stderr().lock();
        if self.live {
            let percent = sent.saturating_mul(100) / self.total.max(1);
            let _ = write!(err, "\r  upload {percent:>3}%");
        }
        if sent >= self.total {
            if self.live {
                let _ = writeln!(err);
            }
            let _ = writeln!(
                err,
                "uploaded in {:.0} ms; validating and compiling on the node...",
                self.started.elapsed().as_secs_f64() * 1e3
            );
            self.uploaded.notify_one();
        }
    }
}

pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1024 * 1024 => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Short form of a digest for human output.
pub fn short_digest(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
