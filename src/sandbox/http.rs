//! The HTTP front: routing, content negotiation (JSON, YAML, protobuf bodies; Table and
//! PartialObjectMetadata answers; aggregated discovery), watches, and fault injection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};

use super::api::{
    Cluster, DeleteOptions, Deleted, FieldValidation, ListOptions, Sub, WriteOptions, WriteResult,
    parse_body, parse_propagation, with_api_version,
};
use super::discovery;
use super::errors::ApiError;
use super::meta;
use super::openapi;
use super::patch::PatchType;
use super::protobuf;
use super::registry::ResourceInfo;
use super::requests::Verb;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{Event, EventType};
use super::table::{IncludeObject, TableRenderer, partial_metadata};

pub type Body = BoxBody<Bytes, Infallible>;

const JSON: &str = "application/json";

/// Accept connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, _) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if cluster.faults.is_unreachable() {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let cluster = cluster.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut drops = cluster.faults.watch_drops();
            let svc_cluster = cluster.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let c = svc_cluster.clone();
                async move { Ok::<_, Infallible>(handle(c, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            loop {
                tokio::select! {
                    r = &mut conn => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "connection ended");
                        }
                        break;
                    }
                    _ = shutdown.changed() => break,
                    changed = drops.changed() => {
                        if changed.is_err() || cluster.faults.is_unreachable() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub(super) fn respond(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    respond(code, JSON, serde_json::to_vec(v).unwrap_or_default())
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.status());
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// Parsed request facts the handlers need.
struct Ctx {
    method: Method,
    query: HashMap<String, String>,
    accept: String,
    content_type: String,
    user_agent: String,
    host: String,
    if_none_match: Option<String>,
}

impl Ctx {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("true") | Some("1"))
    }

    fn wants_table(&self) -> bool {
        self.accept.contains("as=Table")
    }

    fn wants_partial(&self) -> bool {
        self.accept.contains("as=PartialObjectMetadata")
    }

    fn write_options(&self) -> Result<WriteOptions, ApiError> {
        let dry_run = match self.q("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
                )));
            }
        };
        let field_validation = FieldValidation::parse(self.q("fieldValidation").unwrap_or(""))?;
        let field_manager = match self.q("fieldManager") {
            Some(m) if !m.is_empty() => Some(m.to_string()),
            _ => Some(
                self.user_agent
                    .split('/')
                    .next()
                    .unwrap_or("unknown")
                    .to_string(),
            )
            .filter(|s| !s.is_empty()),
        };
        Ok(WriteOptions {
            dry_run,
            field_manager,
            field_validation,
            force: self.flag("force"),
        })
    }
}

async fn handle(cluster: Arc<Cluster>, req: Request<Incoming>) -> Response<Body> {
    cluster.requests.arrived();
    let latency = cluster.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (parts, body) = req.into_parts();
    let hdr = |n: header::HeaderName| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let ctx = Ctx {
        method: parts.method.clone(),
        query,
        accept: hdr(header::ACCEPT),
        content_type: hdr(header::CONTENT_TYPE),
        user_agent: hdr(header::USER_AGENT),
        host: hdr(header::HOST),
        if_none_match: parts
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    };
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error_response(&ApiError::bad_request(format!(
                "cannot read request body: {e}"
            )));
        }
    };
    let path = parts.uri.path().to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    tracing::debug!(cluster = %cluster.name, method = %ctx.method, %path, "request");
    match route(&cluster, &ctx, &segs, body).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

async fn route(
    cluster: &Arc<Cluster>,
    ctx: &Ctx,
    segs: &[&str],
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let get = ctx.method == Method::GET;
    match segs {
        ["version"] if get => Ok(json_response(200, &version_info(cluster))),
        ["healthz"] | ["readyz"] | ["livez"] if get => {
            Ok(respond(200, "text/plain; charset=utf-8", "ok"))
        }
        ["api"] if get => Ok(discovery_response(cluster, ctx, true)),
        ["apis"] if get => Ok(discovery_response(cluster, ctx, false)),
        ["api", v] if get => discovery::resource_list(&cluster.registry, "", v)
            .map(|d| json_response(200, &d))
            .ok_or_else(ApiError::no_route),
        ["apis", g] if get => discovery::api_group(&cluster.registry, g)
            .map(|d| json_response(200, &d))
            .ok_or_else(ApiError::no_route),
        ["apis", g, v] if get => discovery::resource_list(&cluster.registry, g, v)
            .map(|d| json_response(200, &d))
            .ok_or_else(ApiError::no_route),
        ["openapi", "v2"] => Err(ApiError::no_route()),
        ["openapi", "v3"] if get => Ok(json_response(
            200,
            &openapi::root(&cluster.registry, &cluster.settings().git_version),
        )),
        ["openapi", "v3", rest @ ..] if get => Ok(openapi_doc(cluster, ctx, &rest.join("/"))),
        ["api", v, rest @ ..] => resource_request(cluster, ctx, "", v, rest, body).await,
        ["apis", g, v, rest @ ..] => resource_request(cluster, ctx, g, v, rest, body).await,
        _ => Err(ApiError::no_route()),
    }
}

fn version_info(cluster: &Cluster) -> Value {
    let gv = cluster.settings().git_version;
    let trimmed = gv.trim_start_matches('v');
    let mut it = trimmed.split('.');
    let major = it.next().unwrap_or("1").to_string();
    let minor = it.next().unwrap_or("32").to_string();
    json!({
        "major": major, "minor": minor, "gitVersion": gv,
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64",
    })
}

fn discovery_response(cluster: &Cluster, ctx: &Ctx, core: bool) -> Response<Body> {
    // The first aggregated version offered in Accept wins.
    let mut agg: Option<&str> = None;
    for part in ctx.accept.split(',') {
        if part.contains("as=APIGroupDiscoveryList") && part.contains("g=apidiscovery.k8s.io") {
            if part.contains("v=v2beta1") {
                agg = Some("v2beta1");
            } else if part.contains("v=v2") {
                agg = Some("v2");
            }
            if agg.is_some() {
                break;
            }
        }
    }
    let Some(version) = agg else {
        let doc = if core {
            discovery::legacy_api(&ctx.host)
        } else {
            discovery::legacy_apis(&cluster.registry)
        };
        return json_response(200, &doc);
    };
    let doc = discovery::aggregated(&cluster.registry, core, version);
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    let etag = {
        use sha2::Digest;
        format!("\"{}\"", hex::encode_upper(sha2::Sha256::digest(&bytes)))
    };
    let ctype =
        format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    if ctx.if_none_match.as_deref() == Some(etag.as_str()) {
        let mut r = respond(304, &ctype, Bytes::new());
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return r;
    }
    let mut r = respond(200, &ctype, bytes);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn openapi_doc(cluster: &Cluster, ctx: &Ctx, rel: &str) -> Response<Body> {
    let Some((doc, hash)) =
        openapi::document_for(&cluster.registry, rel, &cluster.settings().git_version)
    else {
        return error_response(&ApiError::no_route());
    };
    let etag = format!("\"{hash}\"");
    if ctx.if_none_match.as_deref() == Some(etag.as_str()) {
        return respond(304, JSON, Bytes::new());
    }
    match ctx.q("hash") {
        Some(h) if h != hash => {
            let mut r = respond(301, JSON, Bytes::new());
            if let Ok(v) = HeaderValue::from_str(&format!("/openapi/v3/{rel}?hash={hash}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Some(_) => {
            let mut r = json_response(200, &doc);
            let h = r.headers_mut();
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, immutable"),
            );
            if let Ok(v) = HeaderValue::from_str(&etag) {
                h.insert(header::ETAG, v);
            }
            r
        }
        None => {
            let mut r = json_response(200, &doc);
            if let Ok(v) = HeaderValue::from_str(&etag) {
                r.headers_mut().insert(header::ETAG, v);
            }
            r
        }
    }
}

/// Where in the resource tree a request points.
struct Target<'a> {
    ns: Option<&'a str>,
    plural: &'a str,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

fn parse_target<'a>(group: &str, rest: &[&'a str]) -> Option<Target<'a>> {
    let t = |ns, plural, name, sub| {
        Some(Target {
            ns,
            plural,
            name,
            sub,
        })
    };
    match rest {
        ["namespaces"] => t(None, "namespaces", None, None),
        ["namespaces", n] if group.is_empty() => t(None, "namespaces", Some(*n), None),
        ["namespaces", n, s @ ("status" | "finalize")] if group.is_empty() => {
            t(None, "namespaces", Some(*n), Some(*s))
        }
        ["namespaces", ns, plural] => t(Some(*ns), plural, None, None),
        ["namespaces", ns, plural, name] => t(Some(*ns), plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => t(Some(*ns), plural, Some(*name), Some(*sub)),
        [plural] => t(None, plural, None, None),
        [plural, name] => t(None, plural, Some(*name), None),
        [plural, name, sub] => t(None, plural, Some(*name), Some(*sub)),
        _ => None,
    }
}

/// The verb a request on a resource counts as (None: a method no verb maps to, e.g. HEAD).
fn verb(m: &Method, named: bool, watch: bool) -> Option<Verb> {
    Some(match *m {
        Method::GET if watch => Verb::Watch,
        Method::GET if named => Verb::Get,
        Method::GET => Verb::List,
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE => Verb::Delete,
        _ => return None,
    })
}

fn is_write(m: &Method) -> bool {
    *m != Method::GET && *m != Method::HEAD
}

fn decode_body(ctx: &Ctx, body: &Bytes) -> Result<Value, ApiError> {
    let ct = ctx
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    match ct {
        "application/vnd.kubernetes.protobuf" => protobuf::decode(body),
        "" | "application/json" | "application/yaml" | "text/yaml" | "application/x-yaml"
        | "*/*" => parse_body(body),
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({other}) - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        ))),
    }
}

async fn resource_request(
    cluster: &Arc<Cluster>,
    ctx: &Ctx,
    group: &str,
    version: &str,
    rest: &[&str],
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let target = parse_target(group, rest).ok_or_else(ApiError::no_route)?;
    let res = cluster
        .registry
        .lookup(group, version, target.plural)
        .ok_or_else(ApiError::no_route)?;
    if target.ns.is_some() && !res.namespaced {
        return Err(ApiError::no_route());
    }
    if let Some(v) = verb(&ctx.method, target.name.is_some(), ctx.flag("watch")) {
        cluster.requests.verb(v);
    }
    if let Some(e) = cluster.faults.injected_error(is_write(&ctx.method)) {
        return Err(e);
    }
    let ns = target.ns.unwrap_or("");
    if res.is_virtual() {
        if ctx.method != Method::POST || target.name.is_some() {
            return Err(ApiError::method_not_allowed(ctx.method.as_str(), &res));
        }
        let obj = decode_body(ctx, &body)?;
        return Ok(json_response(201, &review_response(&res, obj)));
    }
    match (&ctx.method, target.name, target.sub) {
        (&Method::GET, None, None) => {
            if ctx.flag("watch") {
                watch(cluster, &res, target.ns, ctx).await
            } else {
                list(cluster, &res, target.ns, ctx)
            }
        }
        (&Method::GET, Some(name), None | Some("status")) => {
            let obj = cluster.get(&res, ns, name)?;
            Ok(render_one(&res, &obj, ctx, cluster.store.current_rv()))
        }
        (&Method::GET, Some(name), Some("scale")) => {
            Ok(json_response(200, &cluster.get_scale(&res, ns, name)?))
        }
        (&Method::GET, Some(name), Some("log")) if res.plural == "pods" && res.group.is_empty() => {
            let pod = cluster.get(&res, ns, name)?;
            let container = ctx
                .q("container")
                .map(String::from)
                .or_else(|| {
                    pod.pointer("/spec/containers/0/name")
                        .and_then(Value::as_str)
                        .map(String::from)
                })
                .unwrap_or_default();
            let key = (ns.to_string(), name.to_string(), container);
            let file = cluster
                .log_files
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            if let Some(path) = file {
                let tail = ctx.q("tailLines").and_then(|t| t.parse().ok());
                return super::logs::serve(cluster, &key, path, ctx.flag("follow"), tail).await;
            }
            let logs = cluster
                .logs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned()
                .unwrap_or_default();
            Ok(respond(200, "text/plain", logs))
        }
        (&Method::POST, None, None) => {
            let obj = decode_body(ctx, &body)?;
            let r = cluster.create(&res, ns, obj, &ctx.write_options()?)?;
            Ok(write_response(201, &r))
        }
        (&Method::POST, Some(name), Some("token")) if res.plural == "serviceaccounts" => {
            cluster.get(&res, ns, name)?;
            let req = decode_body(ctx, &body).unwrap_or(json!({}));
            let exp = jiff::Timestamp::now().as_second()
                + req
                    .pointer("/spec/expirationSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(3600);
            let exp_ts = jiff::Timestamp::from_second(exp)
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            Ok(json_response(
                201,
                &json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
                    "spec": req.get("spec").cloned().unwrap_or(json!({})), "status": {"token": format!("sandbox-token-{ns}-{name}"), "expirationTimestamp": exp_ts}}),
            ))
        }
        (&Method::PUT, Some(name), sub) => {
            let sub = parse_sub(&res, sub)?;
            let obj = decode_body(ctx, &body)?;
            let r = if sub == SubOrFinalize::Finalize {
                let finalizers = obj
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or(json!([]));
                cluster.write_existing(
                    &res,
                    ns,
                    name,
                    Sub::Main,
                    &ctx.write_options()?,
                    true,
                    move |old| {
                        let mut new = old.clone();
                        new["spec"]["finalizers"] = finalizers;
                        Ok(new)
                    },
                )?
            } else {
                cluster.update(&res, ns, name, obj, sub.sub(), &ctx.write_options()?)?
            };
            Ok(write_response(if r.created { 201 } else { 200 }, &r))
        }
        (&Method::PATCH, Some(name), sub) => {
            let sub = parse_sub(&res, sub)?.sub();
            let ptype = PatchType::from_content_type(&ctx.content_type).ok_or_else(|| {
                ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
                    if res.is_custom() { "" } else { ", application/strategic-merge-patch+json" }
                ))
            })?;
            let mut opts = ctx.write_options()?;
            if ptype == PatchType::Apply {
                // Apply has no user-agent fallback: the manager must be named.
                opts.field_manager = ctx
                    .q("fieldManager")
                    .filter(|m| !m.is_empty())
                    .map(String::from);
            }
            let r = cluster.patch(&res, ns, name, ptype, &body, sub, &opts)?;
            Ok(write_response(if r.created { 201 } else { 200 }, &r))
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = delete_options(ctx, &body)?;
            match cluster.delete(&res, ns, name, &opts)? {
                Deleted::Gone(o) => {
                    if returns_deleted_object(&res) {
                        Ok(json_response(200, &o))
                    } else {
                        Ok(json_response(200, &success_status(&res, &o)))
                    }
                }
                Deleted::Pending(o) => Ok(json_response(200, &o)),
            }
        }
        (&Method::DELETE, None, None) => {
            let opts = delete_options(ctx, &body)?;
            let items = cluster.delete_collection(&res, target.ns, &list_options(ctx), &opts)?;
            let items: Vec<Value> = items.iter().map(|o| (**o).clone()).collect();
            Ok(json_response(
                200,
                &json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": {"resourceVersion": cluster.store.current_rv().to_string()}, "items": items}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(ctx.method.as_str(), &res)),
    }
}

#[derive(PartialEq, Clone, Copy)]
enum SubOrFinalize {
    S(Sub),
    Finalize,
}

impl SubOrFinalize {
    fn sub(self) -> Sub {
        match self {
            SubOrFinalize::S(s) => s,
            SubOrFinalize::Finalize => Sub::Main,
        }
    }
}

fn parse_sub(res: &ResourceInfo, sub: Option<&str>) -> Result<SubOrFinalize, ApiError> {
    match sub {
        None => Ok(SubOrFinalize::S(Sub::Main)),
        Some("status") if res.status => Ok(SubOrFinalize::S(Sub::Status)),
        Some("scale") if res.scale.is_some() => Ok(SubOrFinalize::S(Sub::Scale)),
        Some("finalize") if res.plural == "namespaces" && res.group.is_empty() => {
            Ok(SubOrFinalize::Finalize)
        }
        _ => Err(ApiError::no_route()),
    }
}

fn returns_deleted_object(res: &ResourceInfo) -> bool {
    !res.is_custom()
        && res.group.is_empty()
        && matches!(
            res.plural.as_str(),
            "pods" | "serviceaccounts" | "services" | "namespaces"
        )
}

fn success_status(res: &ResourceInfo, o: &Value) -> Value {
    let mut details = json!({"name": meta::name(o), "kind": res.plural, "uid": meta::uid(o)});
    if !res.group.is_empty() {
        details["group"] = json!(res.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

fn write_response(code: u16, r: &WriteResult) -> Response<Body> {
    with_warnings(json_response(code, &r.object), &r.warnings)
}

fn delete_options(ctx: &Ctx, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let mut opts = if body.is_empty() {
        DeleteOptions::default()
    } else {
        DeleteOptions::from_body(&decode_body(ctx, body)?)?
    };
    if let Some(p) = ctx.q("propagationPolicy") {
        opts.propagation = Some(parse_propagation(p)?);
    }
    if ctx.q("dryRun") == Some("All") {
        opts.dry_run = true;
    }
    if let Some(g) = ctx.q("gracePeriodSeconds").and_then(|g| g.parse().ok()) {
        opts.grace_period = Some(g);
    }
    Ok(opts)
}

fn list_options(ctx: &Ctx) -> ListOptions {
    ListOptions {
        label_selector: ctx.q("labelSelector").map(String::from),
        field_selector: ctx.q("fieldSelector").map(String::from),
        limit: ctx.q("limit").and_then(|l| l.parse().ok()),
        continue_token: ctx.q("continue").map(String::from),
    }
}

fn render_one(res: &ResourceInfo, obj: &Value, ctx: &Ctx, rv: u64) -> Response<Body> {
    if ctx.wants_table() {
        let t = TableRenderer::new(res);
        let include = IncludeObject::parse(ctx.q("includeObject").unwrap_or(""));
        let rv_s = meta::str_field(obj, "resourceVersion").to_string();
        let _ = rv;
        return json_response(200, &t.table(&[obj], &rv_s, None, include, true));
    }
    if ctx.wants_partial() {
        return json_response(200, &partial_metadata(obj));
    }
    json_response(200, obj)
}

fn list(
    cluster: &Cluster,
    res: &ResourceInfo,
    ns: Option<&str>,
    ctx: &Ctx,
) -> Result<Response<Body>, ApiError> {
    let r = cluster.list(res, ns, &list_options(ctx))?;
    let rv = r.resource_version.to_string();
    if ctx.wants_table() {
        let t = TableRenderer::new(res);
        let include = IncludeObject::parse(ctx.q("includeObject").unwrap_or(""));
        let objs: Vec<&Value> = r.items.iter().map(|o| o.as_ref()).collect();
        return Ok(json_response(
            200,
            &t.table(&objs, &rv, r.continue_token.as_deref(), include, true),
        ));
    }
    let mut md = json!({"resourceVersion": rv});
    if let Some(c) = &r.continue_token {
        md["continue"] = json!(c);
    }
    if let Some(n) = r.remaining {
        md["remainingItemCount"] = json!(n);
    }
    if ctx.wants_partial() {
        let items: Vec<Value> = r.items.iter().map(|o| partial_metadata(o)).collect();
        return Ok(json_response(
            200,
            &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": md, "items": items}),
        ));
    }
    // Serialize items without cloning the objects.
    let mut out = Vec::with_capacity(256 + r.items.len() * 512);
    out.extend_from_slice(
        format!(
            "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
            json!(res.list_kind()),
            json!(res.api_version()),
            md
        )
        .as_bytes(),
    );
    for (i, o) in r.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if serde_json::to_writer(&mut out, o.as_ref()).is_err() {
            return Err(ApiError::internal("cannot encode object"));
        }
    }
    out.extend_from_slice(b"]}");
    Ok(respond(200, JSON, out))
}

fn review_response(res: &ResourceInfo, mut obj: Value) -> Value {
    let status = match res.kind.as_str() {
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            json!({"allowed": true, "reason": "the sandbox allows everything"})
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false
        }),
        "SelfSubjectReview" => {
            json!({"userInfo": {"username": "sandbox-admin", "groups": ["system:masters", "system:authenticated"]}})
        }
        "TokenReview" => {
            json!({"authenticated": true, "user": {"username": "sandbox-admin", "groups": ["system:masters", "system:authenticated"]}})
        }
        _ => json!({}),
    };
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(res.api_version()));
        m.insert("kind".into(), json!(res.kind));
        m.entry("metadata")
            .or_insert(json!({"creationTimestamp": null}));
        m.insert("status".into(), status);
    }
    obj
}

// ------------------------------------------------------------------------------------- watch

struct WatchFilter {
    resource: String,
    ns: Option<String>,
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl WatchFilter {
    fn matches(&self, o: &Value) -> bool {
        self.ns.as_deref().is_none_or(|ns| meta::namespace(o) == ns)
            && self.labels.as_ref().is_none_or(|l| l.matches(o))
            && self.fields.as_ref().is_none_or(|f| f.matches(o))
    }

    /// The event type a watcher with this filter sees, if any.
    fn classify(&self, ev: &Event) -> Option<EventType> {
        if ev.resource != self.resource {
            return None;
        }
        let now = self.matches(&ev.object);
        match ev.kind {
            EventType::Added => now.then_some(EventType::Added),
            EventType::Deleted => (now || ev.prev.as_deref().is_some_and(|p| self.matches(p)))
                .then_some(EventType::Deleted),
            EventType::Modified => {
                let before = ev.prev.as_deref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some(EventType::Modified),
                    (false, true) => Some(EventType::Added),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
        }
    }
}

struct Encoder {
    res: Arc<ResourceInfo>,
    table: Option<(TableRenderer, IncludeObject)>,
    sent_columns: bool,
}

impl Encoder {
    fn line(&mut self, ty: &str, obj: &Value) -> Bytes {
        let object = match &self.table {
            Some((t, include)) => {
                let first = !self.sent_columns;
                self.sent_columns = true;
                t.table(
                    &[obj],
                    meta::str_field(obj, "resourceVersion"),
                    None,
                    *include,
                    first,
                )
            }
            None => obj.clone(),
        };
        let mut v = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut md = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": md});
        let mut v =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }
}

fn expired_line(requested: u64, oldest: u64) -> Bytes {
    let status =
        ApiError::expired(format!("too old resource version: {requested} ({oldest})")).status();
    let mut v = serde_json::to_vec(&json!({"type": "ERROR", "object": status})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

async fn watch(
    cluster: &Arc<Cluster>,
    res: &Arc<ResourceInfo>,
    ns: Option<&str>,
    ctx: &Ctx,
) -> Result<Response<Body>, ApiError> {
    let labels = match ctx.q("labelSelector") {
        Some(s) if !s.is_empty() => Some(LabelSelector::parse(s)?),
        _ => None,
    };
    let fields = match ctx.q("fieldSelector") {
        Some(s) if !s.is_empty() => Some(FieldSelector::parse(s, res)?),
        _ => None,
    };
    let filter = WatchFilter {
        resource: res.qualified(),
        ns: ns
            .filter(|n| !n.is_empty() && res.namespaced)
            .map(String::from),
        labels,
        fields,
    };
    let settings = cluster.settings();
    let timeout = ctx
        .q("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(settings.max_watch)
        .min(settings.max_watch);
    let bookmarks = ctx.flag("allowWatchBookmarks");
    let send_initial = ctx.flag("sendInitialEvents");
    let rv_param = ctx.q("resourceVersion").unwrap_or("");
    let table = ctx.wants_table().then(|| {
        (
            TableRenderer::new(res),
            IncludeObject::parse(ctx.q("includeObject").unwrap_or("")),
        )
    });
    let mut enc = Encoder {
        res: res.clone(),
        table,
        sent_columns: false,
    };

    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let mut initial: Vec<Bytes> = Vec::new();
    let mut last_rv: u64;
    let brx: Option<broadcast::Receiver<Arc<Event>>>;
    if rv_param.is_empty() || rv_param == "0" || send_initial {
        let (items, rv, rx) = cluster
            .store
            .snapshot_and_subscribe(&filter.resource, filter.ns.as_deref());
        for o in items {
            if filter.matches(&o) {
                let o = with_api_version(o, res);
                initial.push(enc.line("ADDED", &o));
            }
        }
        last_rv = rv;
        if send_initial {
            initial.push(enc.bookmark(rv, true));
        }
        brx = Some(rx);
    } else {
        let from: u64 = rv_param.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: \"{rv_param}\": must be a valid resourceVersion"
            ))
        })?;
        match cluster.store.watch_from(&filter.resource, from) {
            Ok((backlog, rx)) => {
                last_rv = from;
                for ev in backlog {
                    if let Some(ty) = filter.classify(&ev) {
                        let o = with_api_version(ev.object.clone(), res);
                        initial.push(enc.line(ty.as_str(), &o));
                    }
                    last_rv = last_rv.max(ev.rv);
                }
                brx = Some(rx);
            }
            Err(too_old) => {
                initial.push(expired_line(too_old.requested, too_old.oldest));
                last_rv = 0;
                brx = None;
            }
        }
    }
    let mut drops = cluster.faults.watch_drops();
    let bookmark_every = settings.bookmark_interval;
    let res = res.clone();
    tokio::spawn(async move {
        for b in initial {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let Some(mut brx) = brx else { return };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + bookmark_every, bookmark_every);
        loop {
            tokio::select! {
                ev = brx.recv() => match ev {
                    Ok(ev) => {
                        last_rv = last_rv.max(ev.rv);
                        if let Some(ty) = filter.classify(&ev) {
                            let o = with_api_version(ev.object.clone(), &res);
                            if tx.send(enc.line(ty.as_str(), &o)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow a reader: it must relist, as with a compacted history.
                        let _ = tx.send(expired_line(last_rv, last_rv + 1)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(enc.bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = drops.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}
