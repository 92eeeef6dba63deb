# frozen_string_literal: true

require "json"

module Polygear
  # The JSON mode's one encoding, shared with the Python and Node packages:
  # UTF-8 JSON text, any JSON value at the top level (internal).
  module JSONPayload
    module_function

    # +value+ as UTF-8 JSON bytes; raises JSON::GeneratorError (e.g. NaN)
    # with +what+ named.
    def encode(value, what)
      JSON.generate(value).b
    rescue JSON::GeneratorError => e
      raise JSON::GeneratorError, "#{what} cannot be encoded as JSON: #{e.message}"
    end

    # UTF-8 JSON +bytes+ as a Ruby value (objects as Hashes with String
    # keys); raises JSON::ParserError naming +what+ if they are not JSON.
    def decode(bytes, what)
      text = bytes.dup.force_encoding(Encoding::UTF_8)
      raise JSON::ParserError, "#{what} is not JSON: it is not valid UTF-8" unless text.valid_encoding?

      begin
        JSON.parse(text)
      rescue JSON::ParserError => e
        raise JSON::ParserError, "#{what} is not JSON: #{e.message[0, 200]}"
      end
    end
  end
end
