# setup/redis.sh (sourced by setup.sh): the Redis server.
# shellcheck shell=bash

start_redis() {
  mkdir -p "$DATA_DIR/redis"
  if running_pid redis >/dev/null; then
    echo "redis: already running (pid $(running_pid redis))"
  elif check_port_free redis; then
    launch redis redis-server --bind 127.0.0.1 --port 6379 --dir "$DATA_DIR/redis" \
      --save "" --appendonly no --daemonize no
  fi
  wait_for redis 30 redis_ping
}
redis_ping() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]; }

step_redis() { start_redis; }
