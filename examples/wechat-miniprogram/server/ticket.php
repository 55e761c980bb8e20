<?php
// The backend endpoint a mini program asks for its socket ticket (config.js
// ticketUrl), for a realtime server started with
//
//   twistd -n realtime --auth wechat --auth-option token=$WECHAT_TOKEN
//
// The signature is what --auth wechat checks (mode=wx1, the default): the
// lower-case hex SHA-1 of the UTF-8 string
//
//   wx1:<token>:<timestamp>:<nonce>:<uid>
//
// in exactly that order. The timestamp is digits and the nonce 16 to 32
// letters and digits, so neither holds a colon and each value is bound to
// its field: a ticket is good for one uid, one nonce, 300 seconds.
//
// On the command line (how the tests run it):  WECHAT_TOKEN=... php ticket.php alice

function realtimeTicket(string $token, string $uid): array
{
    $timestamp = (string) time();
    $nonce = bin2hex(random_bytes(16));   // 32 hex digits, new for every ticket
    $signature = sha1(implode(':', ['wx1', $token, $timestamp, $nonce, $uid]));
    return [
        'uid' => $uid,
        'timestamp' => $timestamp,
        'nonce' => $nonce,
        'signature' => $signature,
        // the same four fields as one subprotocol, for wx.connectSocket({protocols: [...]})
        'protocol' => "wx.$uid.$timestamp.$nonce.$signature",
    ];
}

$token = getenv('WECHAT_TOKEN');
if (!$token) {
    http_response_code(500);
    fwrite(STDERR, "set WECHAT_TOKEN to the token the realtime server runs with\n");
    exit(2);
}
if (PHP_SAPI === 'cli') {
    $uid = $argv[1] ?? 'uid1';
} else {
    // Here your app finds the user: exchange the code the page sent
    // (wx.login) for its openid with code2Session, or read your own session.
    // Never take the uid from the request itself.
    $uid = my_app_current_user_id();   // yours to write
    header('Content-Type: application/json');
}
echo json_encode(realtimeTicket($token, $uid)), "\n";
