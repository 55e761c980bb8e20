<?php
// Push to one uid through the HTTP API with curl, and print what happened in
// the line port's words: ok (delivered), queued (the uid is offline; the push
// waits for it), fail (nobody to deliver to). The full JSON answer goes to
// stderr, so you can see what the API said.
//
//   php push_http.php [uid] [api url]      (default uid1 http://127.0.0.1:8081)
//
// The key is $REALTIME_API_KEY, else the file realtime-api.key in the current
// directory (where the server writes the key it generated). Needs php-curl.

$uid = $argv[1] ?? 'uid1';
$url = rtrim($argv[2] ?? getenv('REALTIME_API_URL') ?: 'http://127.0.0.1:8081', '/');
$key = getenv('REALTIME_API_KEY') ?: trim((string) @file_get_contents('realtime-api.key'));
if ($key === '') {
    fwrite(STDERR, "no API key: set REALTIME_API_KEY or run where realtime-api.key is\n");
    exit(2);
}
if (!function_exists('curl_init')) {
    fwrite(STDERR, "the curl extension is missing (apt-get install php-curl)\n");
    exit(2);
}

$ch = curl_init("$url/api/push");
curl_setopt_array($ch, [
    CURLOPT_POST => true,
    CURLOPT_RETURNTRANSFER => true,
    CURLOPT_TIMEOUT => 10,
    CURLOPT_HTTPHEADER => ["Authorization: Bearer $key", 'Content-Type: application/json'],
    CURLOPT_POSTFIELDS => json_encode(['uid' => $uid, 'data' => ['percent' => '88%']]),
]);
$body = curl_exec($ch);
$status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
if ($body === false) {
    fwrite(STDERR, 'cannot reach the API: ' . curl_error($ch) . "\n");
    exit(2);
}
fwrite(STDERR, "HTTP $status $body\n");
$answer = json_decode($body, true);
if ($status !== 200) {
    echo 'error: ' . ($answer['error']['message'] ?? $body) . "\n";
    exit(2);
}
$words = ['delivered' => 'ok', 'queued' => 'queued', 'offline' => 'fail'];
echo $words[$answer['status']] ?? $answer['status'], "\n";
exit($answer['status'] === 'delivered' ? 0 : 1);
