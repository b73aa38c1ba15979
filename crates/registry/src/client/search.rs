//! Image search (`docker search`): Docker's v1 search API (`GET /v1/search?q=&n=`) as Docker
//! Hub's index serves it; on a registry without it (distribution registries and Berth's own
//! speak only v2) the v2 catalog, filtered by the term, so that a private registry can be
//! searched too. Pages and bodies are bounded like every other read.

use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::{
    Client, ClientError, Credentials, Endpoint, MAX_MANIFEST_SIZE, PageWalk, build,
    normalize_domain, transport,
};

/// Where Docker Hub answers v1 searches.
const HUB_INDEX: &str = "index.docker.io";
/// Catalog pages read, and repositories asked for per page.
const MAX_CATALOG_PAGES: usize = 100;
const CATALOG_PAGE: usize = 1000;

/// One search hit, in the v1 API's words (which the Engine API passes on).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchResult {
    pub name: String,
    pub description: String,
    pub star_count: u64,
    pub is_official: bool,
    pub is_automated: bool,
}

impl Client {
    /// Searches the registry at `domain` (`docker.io` for Docker Hub) for repositories
    /// matching `term`: at most `limit` hits. Catalog hits are named `domain/repository`, so
    /// that they can be pulled as shown.
    pub async fn search(
        &self,
        domain: &str,
        term: &str,
        limit: usize,
        creds: &Credentials,
    ) -> Result<Vec<SearchResult>, ClientError> {
        let (authority, hub) = normalize_domain(domain)?;
        let ep = Endpoint {
            scheme: hub.then_some("https"),
            authority: if hub { HUB_INDEX.to_owned() } else { authority },
            mirror: false,
        };
        let query = serde_urlencoded::to_string([("q", term), ("n", &limit.to_string())])
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let inner = &self.inner;
        let mut mk = |base: &str, auth: Option<&HeaderValue>| {
            build(
                Method::GET,
                &format!("{base}/v1/search?{query}"),
                auth,
                transport::empty(),
            )
        };
        let a = inner.request(&ep, creds, &[], &mut mk).await?;
        match a.resp.status() {
            StatusCode::OK => {
                #[derive(Deserialize)]
                struct Page {
                    #[serde(default)]
                    results: Vec<SearchResult>,
                }
                let body = transport::read_limited(
                    a.resp,
                    MAX_MANIFEST_SIZE,
                    "search results",
                    inner.transport.read_timeout,
                )
                .await?;
                let page: Page = serde_json::from_slice(&body)
                    .map_err(|e| ClientError::Protocol(format!("search results: {e}")))?;
                let mut results = page.results;
                results.truncate(limit);
                Ok(results)
            }
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED if !hub => {
                transport::drain(a.resp, inner.transport.read_timeout).await;
                self.search_catalog(&ep, domain, term, limit, creds).await
            }
            _ => Err(inner.status_error(a.resp).await),
        }
    }

    /// The repositories of the registry's catalog whose name contains `term`.
    async fn search_catalog(
        &self,
        ep: &Endpoint,
        domain: &str,
        term: &str,
        limit: usize,
        creds: &Credentials,
    ) -> Result<Vec<SearchResult>, ClientError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let term = term.to_ascii_lowercase();
        let mut out = Vec::new();
        self.inner
            .paginate(
                ep,
                creds,
                &["registry:catalog:*".to_owned()],
                PageWalk {
                    path: &format!("/v2/_catalog?n={CATALOG_PAGE}"),
                    what: "catalog",
                    max: MAX_CATALOG_PAGES,
                },
                &mut |body| {
                    let page: Page = serde_json::from_slice(body)
                        .map_err(|e| ClientError::Protocol(format!("catalog: {e}")))?;
                    for repo in page.repositories.unwrap_or_default() {
                        if out.len() >= limit {
                            return Ok(false);
                        }
                        if repo.to_ascii_lowercase().contains(&term) {
                            out.push(SearchResult {
                                name: format!("{domain}/{repo}"),
                                ..SearchResult::default()
                            });
                        }
                    }
                    Ok(true)
                },
            )
            .await?;
        Ok(out)
    }
}
