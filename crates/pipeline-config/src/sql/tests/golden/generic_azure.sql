CREATE TABLE q (text STRING) WITH ('connector' = 'filesystem', 'path' = 'q.jsonl', 'format' = 'json');
CREATE TABLE a (text STRING, out STRING) WITH ('connector' = 'filesystem', 'path' = 'a.jsonl', 'format' = 'json');
CREATE MODEL az INPUT (text STRING) OUTPUT (out STRING) WITH (
  'provider' = 'azure-openai',
  'endpoint' = 'https://r.openai.azure.com/openai/deployments/d/chat/completions',
  'api-version' = '2024-10-21', 'model' = 'd', 'task' = 'chat');
INSERT INTO a SELECT * FROM ML_PREDICT(TABLE q, MODEL az, DESCRIPTOR(text),
  MAP['batch', 'true', 'ml.batch.api.endpoint', 'https://r.openai.azure.com/openai']);
