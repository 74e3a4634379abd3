-- SPDX-License-Identifier: MIT
-- The rest channel (docs/contract.md §8), the counterpart of Rasa's RestInput.
--
-- POST /webhooks/rest/webhook with {"sender": ..., "message": ..., "input_channel": ...,
-- "metadata": ..., "message_id": ...}; the bot's replies come back as a JSON array in the answer,
-- or one JSON object per line as they are produced with ?stream=true.
--
-- Every field below is the default a channel gets when it leaves the field out, so this file is
-- also the smallest complete channel: a custom channel starts from here and overrides hooks.
local channel = { name = "rest" }

-- Rasa's RestInput takes no parameters: any key under `rest:` in credentials.yml is a typo.
channel.parameters = {}

return channel
