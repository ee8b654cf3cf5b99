# Shared by the server scripts (api-check, attack, hedge, replicas, swap-under-load): the
# small generated "shop" catalog trained into a registry, and the wait for a server to be
# ready. Source it once FUNNEL and WORK are set.

# shop_registry VERSIONS [TRAIN FLAGS...]: generates WORK/cat (300 users, 1,000 items, 15,000
# interactions) and trains VERSIONS versions of "shop" into WORK/reg, seeds 1 to VERSIONS,
# without ALS, with the flags given (epochs, --no-tune). Promotes nothing.
shop_registry() {
  local versions=$1; shift
  "$FUNNEL" generate catalog --users 300 --items 1000 --interactions 15000 --out "$WORK/cat" >/dev/null
  local c=$WORK/cat seed
  for seed in $(seq 1 "$versions"); do
    "$FUNNEL" train --interactions "$c/interactions.csv" --items "$c/items.csv" --users "$c/users.csv" \
        --schema "$c/schema.json" --name shop --registry "$WORK/reg" --no-als --seed "$seed" "$@" >/dev/null
  done
}

# wait_ready URL [WHO]: waits up to 30 s for URL/readyz to answer 200; else says so, naming
# WHO, and fails.
wait_ready() {
  local _
  for _ in $(seq 1 300); do curl -fs "$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "${2:-server}: nothing ready at $1 after 30 s" >&2
  return 1
}
