-- wrk script for loadtest/fanout.sh: every request POSTs the same 1 MiB body to
-- /upload (a media segment's size class), with a Content-Length.
wrk.method = "POST"
wrk.path = "/upload"
wrk.headers["Content-Type"] = "video/mp4"
wrk.body = string.rep("0123456789abcdef", 65536)
