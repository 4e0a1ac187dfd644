//! The `order` query parameter of every list endpoint.
//!
//! Each listing sorts by one key (an id, or a time then an id) and documents it with its
//! default: records of things that happened (incidents, alerts, persons of interest) list
//! newest first; registries (cameras, subjects, API keys) in id order; the dead-letter queue
//! oldest first, like a queue. `order` turns any of them around; pass the same `order` with a
//! page's `next_cursor`.

use poem_openapi::Enum;
use vigil_projections::Order;

/// Which way a listing runs over its sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "ListOrder", rename_all = "lowercase")]
pub enum OrderParam {
    /// Ascending: oldest (or lowest id) first.
    Asc,
    /// Descending: newest (or highest id) first.
    Desc,
}

impl From<OrderParam> for Order {
    fn from(order: OrderParam) -> Self {
        match order {
            OrderParam::Asc => Order::Asc,
            OrderParam::Desc => Order::Desc,
        }
    }
}

/// The order asked for, else the listing's default.
pub fn order_or(asked: Option<OrderParam>, default: Order) -> Order {
    asked.map_or(default, Order::from)
}
