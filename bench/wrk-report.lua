-- wrk script of bench/run.sh: sets the Authorization header from $BENCH_AUTH
-- (so the credential never appears on a command line) and prints one
-- machine-readable line after wrk's own --latency report. Latencies in µs.
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then
	wrk.headers["Authorization"] = auth
end

done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
		'"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
		'"lat_mean_us":%.2f,"lat_stdev_us":%.2f,"lat_max_us":%.0f,' ..
		'"lat_p50_us":%.0f,"lat_p90_us":%.0f,"lat_p99_us":%.0f,"lat_p999_us":%.0f}\n',
		summary.requests, summary.duration, summary.bytes,
		e.connect, e.read, e.write, e.status, e.timeout,
		latency.mean, latency.stdev, latency.max,
		latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
