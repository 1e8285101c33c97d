-- wrk script for loadtest/iot.sh: every request POSTs the same IoT reading (306
-- bytes of JSON, valid for config/schemas/sensor.json) to /ingest, as a device would.
wrk.method = "POST"
wrk.path = "/ingest"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Device-ID"] = "thermo-0042"
wrk.body = '{"sensor_type":"temperature","value":21.57,"unit":"celsius",'
    .. '"timestamp":1765000000000,"firmware":"2.4.1","battery":0.87,'
    .. '"location":{"lat":52.52,"lon":13.405,"site":"warehouse-7","floor":2},'
    .. '"tags":["cold-chain","zone-b","rack-12"],"seq":184467,'
    .. '"quality":{"rssi":-67,"snr":9.5,"retries":0},"note":"periodic"}'
