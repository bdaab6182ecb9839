//! MediaMTX's pagination of lists: `?page=` (from 0) and `?itemsPerPage=` (100 unless
//! given), answered `{pageCount, itemCount, items}`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;

use super::ApiError;

/// Items per page when the query does not say.
const ITEMS_PER_PAGE: usize = 100;

/// Which page of a list a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Page {
    page: usize,
    items_per_page: usize,
}

/// One page of a list, with how many items and pages the whole list has.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct List<T> {
    page_count: usize,
    item_count: usize,
    items: Vec<T>,
}

impl Page {
    /// From a URL query; as MediaMTX, numbers below 2^31, and at least one item per page.
    pub(super) fn parse(query: &str) -> Result<Page, ApiError> {
        let mut page = Page {
            page: 0,
            items_per_page: ITEMS_PER_PAGE,
        };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let number = || {
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n < 1 << 31)
                    .map(|n| n as usize)
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "{key} '{value}' is not a number from 0 to 2147483647"
                        ))
                    })
            };
            match &*key {
                "page" => page.page = number()?,
                "itemsPerPage" => page.items_per_page = number()?,
                _ => {}
            }
        }
        if page.items_per_page == 0 {
            return Err(ApiError::BadRequest(
                "itemsPerPage must be at least 1".into(),
            ));
        }
        Ok(page)
    }

    /// This page of `items` (empty past the last page).
    pub(super) fn of<T>(self, mut items: Vec<T>) -> List<T> {
        let item_count = items.len();
        let start = self
            .page
            .saturating_mul(self.items_per_page)
            .min(item_count);
        let end = start.saturating_add(self.items_per_page).min(item_count);
        items.truncate(end);
        items.drain(..start);
        List {
            page_count: item_count.div_ceil(self.items_per_page),
            item_count,
            items,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Page, ApiError> {
        Page::parse(parts.uri.query().unwrap_or_default())
    }
}
