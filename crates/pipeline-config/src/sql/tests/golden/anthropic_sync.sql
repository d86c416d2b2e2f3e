CREATE TABLE q (text STRING) WITH ('connector' = 'filesystem', 'path' = 'q.jsonl', 'format' = 'json');
CREATE TABLE a (text STRING, reply STRING) WITH ('connector' = 'filesystem', 'path' = 'a.jsonl', 'format' = 'json');
CREATE MODEL claude INPUT (text STRING) OUTPUT (reply STRING) WITH (
  'provider' = 'anthropic', 'endpoint' = 'https://api.anthropic.com/v1/messages',
  'api-key' = '${ANTHROPIC_API_KEY}', 'model' = 'claude-haiku-4-5',
  'anthropic-version' = '2023-06-01', 'system-prompt' = '');
INSERT INTO a SELECT * FROM ML_PREDICT(TABLE q, MODEL claude, DESCRIPTOR(text), MAP['async', 'false']);
