{#
    For a history table with one row per interval: fails with every pair of intervals of the
    same `key` that overlap (two open intervals included), and every interval that ends before
    it starts. `valid_to` null means the interval is still open.
#}
{% test intervals_do_not_overlap(model, key, interval_id, valid_from='valid_from', valid_to='valid_to') %}

with intervals as (
    select
        {{ key }} as interval_key,
        {{ interval_id }} as interval_id,
        {{ valid_from }} as valid_from,
        {{ valid_to }} as valid_to
    from {{ model }}
),

overlapping_pairs as (
    select
        earlier.interval_key,
        earlier.interval_id,
        later.interval_id as overlapping_interval_id
    from intervals as earlier
    inner join intervals as later
        on later.interval_key = earlier.interval_key
        and later.interval_id > earlier.interval_id
    where earlier.valid_from < coalesce(later.valid_to, 'infinity'::timestamptz)
        and later.valid_from < coalesce(earlier.valid_to, 'infinity'::timestamptz)
),

backwards_intervals as (
    select
        interval_key,
        interval_id,
        cast(null as varchar) as overlapping_interval_id
    from intervals
    where valid_to < valid_from
)

select * from overlapping_pairs
union all
select * from backwards_intervals

{% endtest %}
