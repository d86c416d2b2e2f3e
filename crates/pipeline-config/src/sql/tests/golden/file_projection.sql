-- The projection selects, reorders and renames ML_PREDICT's output (the
-- input's columns, then the model's OUTPUT column); INSERT INTO maps it to
-- the sink by position; `ml_predict` takes the metadata, wherever it is.
CREATE TABLE reviews (id INT, `text` STRING, lang STRING, stars DOUBLE)
  WITH ('connector' = 'filesystem', 'path' = 'in/reviews.jsonl', 'format' = 'json');
CREATE TABLE rated (
  rating STRING,
  ml_predict ROW<status STRING, error ROW<code STRING, message STRING>>,
  review_id BIGINT,
  review STRING
) WITH ('connector' = 'filesystem', 'path' = 'out/rated/', 'format' = 'json');
CREATE MODEL rater INPUT (`text` STRING) OUTPUT (label STRING) WITH (
  'provider' = 'openai', 'endpoint' = 'http://127.0.0.1:8080/v1/chat/completions',
  'api-key' = '${OPENAI_API_KEY}', 'model' = 'gpt-4o-mini',
  'top-p' = '0.9', 'stop' = 'END,###', 'seed' = '42', 'max-tokens' = '16',
  'error-handling-strategy' = 'RETRY', 'retry-num' = '2');
INSERT INTO rated
SELECT label AS rating, id, `text` review FROM ML_PREDICT(TABLE reviews, MODEL rater, DESCRIPTOR(`text`),
  MAP['output-mode', 'ALLOW_UNORDERED', 'timeout', '1 min', 'max-concurrent-operations', '3']);
