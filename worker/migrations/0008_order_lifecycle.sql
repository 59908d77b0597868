-- The order lifecycle (events of schema version 2): a purchase places an
-- order (pending); order_completed, order_canceled (before completion) and
-- order_refunded (after completion, some or all lines) change it.
--
-- order_status_event keeps every status event once (by event id);
-- fact_order, one row per order, is recomputed by the loader from the
-- order's lines and all its status events for every order a batch touches,
-- in the batch's transaction. The result does not depend on arrival order:
-- an event applied twice, or an older one after a newer, changes nothing,
-- and a status event that arrives before its order waits in
-- order_status_event until the order's purchase is loaded.

LOCK TABLE {schema}.fact_sales IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE {schema}.order_status_event (
    event_id         uuid PRIMARY KEY,
    order_id         uuid NOT NULL,
    status           text NOT NULL CHECK (status IN ('completed', 'canceled', 'refunded')),
    event_time       timestamptz NOT NULL,
    reason           text,
    refund_amount    numeric(18,2) NOT NULL DEFAULT 0,
    refund_units     integer NOT NULL DEFAULT 0,
    loaded_at        timestamptz NOT NULL DEFAULT now(),
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL
);
CREATE INDEX order_status_event_order_idx ON {schema}.order_status_event (order_id);

CREATE TABLE {schema}.fact_order (
    order_id         uuid PRIMARY KEY,
    customer_key     bigint NOT NULL,
    date_key         integer NOT NULL,          -- when it was placed
    time_key         smallint NOT NULL,
    device_key       smallint NOT NULL,
    channel_key      smallint NOT NULL,
    payment_method   text NOT NULL,
    currency         text NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'completed', 'canceled', 'refunded')),
    placed_at        timestamptz NOT NULL,
    completed_at     timestamptz,
    canceled_at      timestamptz,
    refunded_at      timestamptz,               -- the latest refund
    cancel_reason    text,
    refund_reason    text,                      -- of the latest refund
    lines            integer NOT NULL,
    units            integer NOT NULL,
    booked_amount    numeric(18,2) NOT NULL,    -- net amount when placed
    refunded_amount  numeric(18,2) NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fact_order_status_idx ON {schema}.fact_order (status, placed_at);

-- Orders loaded before this migration are pending: no status event of
-- theirs has been seen.
INSERT INTO {schema}.fact_order (order_id, customer_key, date_key, time_key, device_key, channel_key,
                                 payment_method, currency, status, placed_at, lines, units,
                                 booked_amount, refunded_amount)
SELECT order_id, min(customer_key), min(date_key), min(time_key), min(device_key), min(channel_key),
       min(payment_method), min(currency), 'pending', min(event_time), count(*), sum(quantity),
       sum(net_amount), 0
FROM {schema}.fact_sales
GROUP BY order_id;

-- Revenue by where orders stand: booked (every order placed), completed,
-- canceled, refunded, and net realised (completed orders less their refunds).
CREATE VIEW {schema}.v_revenue_by_status AS
SELECT count(*)                                                                   AS orders,
       count(*) FILTER (WHERE status = 'pending')                                 AS pending_orders,
       count(*) FILTER (WHERE status IN ('completed', 'refunded'))                AS completed_orders,
       count(*) FILTER (WHERE status = 'canceled')                                AS canceled_orders,
       count(*) FILTER (WHERE status = 'refunded')                                AS refunded_orders,
       coalesce(sum(booked_amount), 0)                                            AS booked_revenue,
       coalesce(sum(booked_amount) FILTER (WHERE status IN ('completed', 'refunded')), 0) AS completed_revenue,
       coalesce(sum(booked_amount) FILTER (WHERE status = 'canceled'), 0)         AS canceled_revenue,
       coalesce(sum(refunded_amount) FILTER (WHERE status = 'refunded'), 0)       AS refunded_revenue,
       coalesce(sum(booked_amount - refunded_amount) FILTER (WHERE status IN ('completed', 'refunded')), 0)
                                                                                  AS net_realised_revenue
FROM {schema}.fact_order;

CREATE VIEW {schema}.v_order_status_reasons AS
SELECT status, coalesce(CASE status WHEN 'canceled' THEN cancel_reason ELSE refund_reason END, '') AS reason,
       count(*) AS orders,
       sum(CASE status WHEN 'canceled' THEN booked_amount ELSE refunded_amount END) AS amount
FROM {schema}.fact_order
WHERE status IN ('canceled', 'refunded')
GROUP BY 1, 2;
