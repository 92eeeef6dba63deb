# frozen_string_literal: true

# Ruby side of the cross-language test matrix (see tests/matrix/README.md).
#   ruby matrix.rb worker <server> <gate-dir> <lang>
#   ruby matrix.rb client <server> <gate-dir> <lang> main <w1,w2,..>
#   ruby matrix.rb client <server> <gate-dir> <lang> coal <unique:worker,..>
require "polygear"

TEXT = "héllo wörld — 日本語 🎉 ∑ Ω"
# The json check's value (the same in every language's script and run.py).
JSON_VALUE = {
  "text" => TEXT,
  "n" => 42,
  "f" => 1.5,
  "neg" => -7,
  "list" => [1, "two", nil, true, false],
  "nested" => { "empty" => [], "obj" => {} }
}.freeze
GATE_WAIT = 30.0
JOB_TIMEOUT = 60.0

# The Ruby exception a worker block raises for the `raise` check.
class MatrixError < StandardError; end

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

def wait_file(path)
  deadline = now + GATE_WAIT
  while now < deadline
    return true if File.exist?(path)

    sleep 0.02
  end
  false
end

def token?(s) = s.match?(/\A[A-Za-z0-9_-]+\z/)

def worker(server, gate, lang)
  w = Polygear::Worker.new(servers: [server], concurrency: 6, client_id: "matrix-#{lang}")
  counter = 0
  lock = Mutex.new
  w.register("#{lang}.echo", &:data)
  w.register("#{lang}.text") do |job|
    s = job.data.dup.force_encoding(Encoding::UTF_8)
    raise MatrixError, "not UTF-8" unless s.valid_encoding?

    s.reverse
  end
  w.register("#{lang}.stream") do |job|
    n = Integer(job.data)
    n.times do |i|
      job.send_data("chunk-#{i}")
      job.send_status(i + 1, n)
    end
    "done"
  end
  w.register("#{lang}.raise") { |job| raise MatrixError, job.data.dup.force_encoding(Encoding::UTF_8) }
  w.register("#{lang}.bg") do |job|
    token = job.data.dup.force_encoding(Encoding::BINARY)
    job.send_status(1, 2)
    raise MatrixError, "gate file #{token.inspect} never appeared" unless token?(token) && wait_file(File.join(gate, token))

    "bg-done"
  end
  w.register("#{lang}.json", json: true) do |value, _job|
    { "worker" => lang, "echo" => value, "map" => value.is_a?(Hash) }
  end
  w.register("#{lang}.slow") do |job|
    raise MatrixError, "release file never appeared" unless wait_file(File.join(gate, "release"))

    n = lock.synchronize { counter += 1 }
    job.data.b + "|#{lang}-#{Process.pid}-#{n}-#{Process.clock_gettime(Process::CLOCK_REALTIME, :nanosecond)}".b
  end
  w.work
end

def binary_payload
  (0..255).to_a.pack("C*") + "\x00\x00mid\x00".b + [0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0x00].pack("C*")
end

def big_payload
  n = 16 * 1024 * 1024
  ((0...251).to_a.pack("C*") * ((n / 251) + 1)).byteslice(0, n)
end

def report(client, worker, check)
  status = "pass"
  detail = ""
  begin
    yield
  rescue StandardError => e
    status = "fail"
    detail = "#{e.class}: #{e.message}"
  end
  detail = detail.tr("\t\n", "  ")[0, 300]
  $stdout.write("R\t#{client}\t#{worker}\t#{check}\t#{status}\t#{detail}\n")
  $stdout.flush
end

def check(cond, msg)
  raise msg unless cond
end

def client_main(c, lang, gate, workers)
  binary = binary_payload
  big = big_payload
  echo = lambda do |w, payload|
    got = c.submit("#{w}.echo", payload)
    next if got.b == payload

    at = (0...[got.bytesize, payload.bytesize].min).find { |i| got.getbyte(i) != payload.getbyte(i) }
    raise "sent #{payload.bytesize} bytes, got #{got.bytesize} (first diff at #{at.inspect})"
  end
  workers.each do |w|
    report(lang, w, "binary") { echo.call(w, binary) }
    # `gearman -w` cannot take 16 MiB in reasonable time (see run.py).
    report(lang, w, "big") { echo.call(w, big) } unless w == "c"
    report(lang, w, "unicode") do
      got = c.submit("#{w}.text", TEXT).dup.force_encoding(Encoding::UTF_8)
      check(got == TEXT.reverse, "got #{got.inspect}, want #{TEXT.reverse.inspect}")
    end
    report(lang, w, "stream") do
      n = 4
      events = []
      result = c.submit("#{w}.stream", n.to_s) do |ev|
        events << (ev.type == :status ? [:status, ev.numerator, ev.denominator] : [ev.type, ev.data.b])
      end
      want = []
      n.times do |i|
        if w == "c"
          # gearman -w -N: each line as WORK_DATA holding all output so far (documented
          # libgearman quirk); it cannot send WORK_STATUS.
          want << [:data, (0..i).map { |j| "chunk-#{j}" }.join("\n").b]
        else
          want << [:data, "chunk-#{i}".b]
          want << [:status, i + 1, n]
        end
      end
      check(events == want, "events #{events.inspect}, want #{want.inspect}")
      check(w == "c" || result == "done", "result #{result.inspect}")
    end
    unless w == "c"
      report(lang, w, "exception") do
        msg = "matrix boom #{lang}->#{w} ✗ ünï"
        begin
          got = c.submit("#{w}.raise", msg)
          raise "no error, result #{got.inspect}"
        rescue Polygear::JobException => e
          text = e.worker_message.dup.force_encoding(Encoding::UTF_8)
          check(text.include?(msg), "JobException#worker_message #{text.inspect} lacks #{msg.inspect}")
        end
      end
    end
    report(lang, w, "background") do
      token = "bg-#{lang}-#{w}-#{Process.pid}-#{Process.clock_gettime(Process::CLOCK_REALTIME, :microsecond)}"
      handle = c.submit_background("#{w}.bg", token)
      deadline = now + 20
      loop do
        st = c.status(handle)
        reported = w == "c" || (st.numerator == 1 && st.denominator == 2)
        break if st.known && st.running && reported

        check(now < deadline, "never running 1/2: last #{st.inspect}")
        sleep 0.03
      end
      File.write(File.join(gate, token), "")
      while c.status(handle).known
        check(now < deadline, "job never finished")
        sleep 0.03
      end
    end
    next if w == "c"

    report(lang, w, "json") do
      got = c.submit_json("#{w}.json", JSON_VALUE)
      want = { "worker" => w, "echo" => JSON_VALUE, "map" => true }
      check(got == want, "got #{got.inspect}, want #{want.inspect}")
    end
  end
end

def client_coal(c, lang, items)
  out = Mutex.new
  items.map do |item|
    unique, w = item.split(":", 2)
    Thread.new do
      line = begin
        "C\t#{lang}\t#{unique}\tok\t#{c.submit("#{w}.slow", "coal", unique: unique).unpack1('H*')}"
      rescue StandardError => e
        "C\t#{lang}\t#{unique}\terr\t#{e.class}: #{e.message}".tr("\n", " ")
      end
      out.synchronize { $stdout.write("#{line}\n") && $stdout.flush }
    end
  end.each(&:join)
end

case ARGV
in ["worker", server, gate, lang]
  worker(server, gate, lang)
in ["client", server, gate, lang, mode, list]
  c = Polygear::Client.new(servers: [server], timeout: JOB_TIMEOUT, client_id: "matrix-client-#{lang}")
  begin
    items = list.split(",").reject(&:empty?)
    mode == "main" ? client_main(c, lang, gate, items) : client_coal(c, lang, items)
  ensure
    c.close
  end
else
  warn "usage: ruby matrix.rb worker|client ..."
  exit 2
end
