<?php
// Push to one uid through the line port, exactly as a Workerman push-service
// backend does: Workerman's Text protocol, one JSON object per line, and the
// server answers "ok" (a connection got it), "queued" (the uid is offline and
// the push waits for it) or "fail".
//
//   php push_line.php [uid] [host:port]        (default uid1 127.0.0.1:5678)
//
// The page of that uid receives the whole line: {"uid":"uid1","percent":"88%"}

$uid = $argv[1] ?? 'uid1';
$address = $argv[2] ?? getenv('REALTIME_LINE') ?: '127.0.0.1:5678';

// 建立socket连接到内部推送端口 (connect to the internal push port)
$client = stream_socket_client("tcp://$address", $errno, $errmsg, 1);
if (!$client) {
    fwrite(STDERR, "cannot connect to $address: $errmsg\n");
    exit(2);
}
// 推送的数据，包含uid字段，表示是给这个uid推送 (the data; "uid" says who gets it)
$data = array('uid' => $uid, 'percent' => '88%');
// 发送数据，注意5678端口是Text协议的端口，Text协议需要在数据末尾加上换行符
// (send it: the Text protocol needs a newline at the end)
fwrite($client, json_encode($data) . "\n");
// 读取推送结果 (read the answer)
$answer = fread($client, 8192);
echo $answer;
exit(trim($answer) === 'ok' ? 0 : 1);
