//! The glue bound to proxy-wasm (wasm32 only): the SDK's context traits hand each callback to
//! [`Root`] and [`Request`], and [`WasmHost`] implements [`Host`] with the ABI's host functions.
//!
//! The host functions are called directly rather than through the SDK's wrappers, which panic
//! on any status they do not expect (a panic aborts the VM; in Kong a trap in a call-response
//! callback lets the paused request through). Here every status becomes a value. Only
//! `dispatch_http_call` goes through the SDK, which must register the call to route its answer.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use super::host::{self, Header, Host, HostError, Level, MetricKind};
use super::{Request, Root, Verdict};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(RootCtx { root: Root::new(id) })
    });
}}

struct RootCtx {
    root: Root,
}

impl Context for RootCtx {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.root
            .on_call_response(&WasmHost, token_id, num_headers, body_size);
    }
}

impl RootContext for RootCtx {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = WasmHost::buffer(BUFFER_PLUGIN_CONFIGURATION, usize::MAX);
        self.root.on_configure(&WasmHost, &bytes)
    }

    fn on_tick(&mut self) {
        self.root.on_tick(&WasmHost);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RequestCtx {
            request: self.root.new_request(context_id),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct RequestCtx {
    request: Request,
}

impl Context for RequestCtx {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.request
            .on_call_response(&WasmHost, token_id, num_headers, body_size);
    }

    fn on_done(&mut self) -> bool {
        self.request.on_done();
        true
    }
}

impl HttpContext for RequestCtx {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.request.on_request_headers(&WasmHost) {
            Verdict::Continue => Action::Continue,
            Verdict::Pause => Action::Pause,
        }
    }

    fn on_log(&mut self) {
        self.request.on_done();
    }
}

const OK: u32 = 0;
const MAP_REQUEST_HEADERS: u32 = 0;
const MAP_CALL_RESPONSE_HEADERS: u32 = 6;
const BUFFER_CALL_RESPONSE_BODY: u32 = 4;
const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
const STREAM_HTTP_REQUEST: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

/// Take ownership of a buffer the host allocated through the SDK's `proxy_on_memory_allocate`
/// (a `Vec<u8>` of exactly `size` capacity).
///
/// # Safety
/// `data` must be null or such a buffer of `size` bytes, not owned by anything else.
unsafe fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        Some(Vec::from_raw_parts(data, size, size))
    }
}

fn result(status: u32) -> Result<(), HostError> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

/// The proxy-wasm host of this VM.
pub struct WasmHost;

impl WasmHost {
    fn buffer(kind: u32, max: usize) -> Vec<u8> {
        let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
        // SAFETY: the host writes a buffer it allocated in our memory, or nothing.
        unsafe {
            if proxy_get_buffer_bytes(kind, 0, max, &mut data, &mut size) == OK {
                owned(data, size).unwrap_or_default()
            } else {
                Vec::new()
            }
        }
    }

    fn map(kind: u32) -> Result<Vec<Header>, HostError> {
        let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
        // SAFETY: as in `buffer`.
        let bytes = unsafe {
            result(proxy_get_header_map_pairs(kind, &mut data, &mut size))?;
            owned(data, size).unwrap_or_default()
        };
        host::parse_map(&bytes).ok_or(HostError(3))
    }

    fn map_value(kind: u32, name: &str) -> Option<Vec<u8>> {
        let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
        // SAFETY: as in `buffer`.
        unsafe {
            if proxy_get_header_map_value(kind, name.as_ptr(), name.len(), &mut data, &mut size)
                == OK
            {
                owned(data, size)
            } else {
                None
            }
        }
    }
}

impl Host for WasmHost {
    fn now_ms(&self) -> u64 {
        let mut nanos = 0u64;
        // SAFETY: the host writes one u64.
        unsafe {
            proxy_get_current_time_nanoseconds(&mut nanos);
        }
        nanos / 1_000_000
    }

    fn log(&self, level: Level, message: &str) {
        // SAFETY: reads `message` only.
        unsafe {
            proxy_log(level as u32, message.as_ptr(), message.len());
        }
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let path = host::property_path(path);
        let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
        // SAFETY: as in `buffer`.
        unsafe {
            if proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) == OK {
                owned(data, size)
            } else {
                None
            }
        }
    }

    fn random(&self) -> Option<[u8; 16]> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).ok().map(|()| bytes)
    }

    fn request_headers(&self) -> Vec<Header> {
        WasmHost::map(MAP_REQUEST_HEADERS).unwrap_or_default()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        // SAFETY: reads the name and value only.
        unsafe {
            match value {
                Some(v) => proxy_replace_header_map_value(
                    MAP_REQUEST_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    v.as_ptr(),
                    v.len(),
                ),
                None => {
                    proxy_remove_header_map_value(MAP_REQUEST_HEADERS, name.as_ptr(), name.len())
                }
            };
        }
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let map = host::serialize_map(headers);
        // SAFETY: reads the buffers only.
        unsafe {
            proxy_send_local_response(
                status,
                std::ptr::null(),
                0,
                body.as_ptr(),
                body.len(),
                map.as_ptr(),
                map.len(),
                -1,
            );
        }
    }

    fn resume_request(&self) {
        // SAFETY: no memory is passed.
        unsafe {
            proxy_continue_stream(STREAM_HTTP_REQUEST);
        }
    }

    fn dispatch(
        &self,
        upstream: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(upstream, headers.to_vec(), None, Vec::new(), timeout)
            .map_err(|s| HostError(s as u32))
    }

    fn call_headers(&self) -> Result<Vec<Header>, HostError> {
        WasmHost::map(MAP_CALL_RESPONSE_HEADERS)
    }

    fn call_header(&self, name: &str) -> Option<Vec<u8>> {
        WasmHost::map_value(MAP_CALL_RESPONSE_HEADERS, name)
    }

    fn call_body(&self, size: usize) -> Vec<u8> {
        WasmHost::buffer(BUFFER_CALL_RESPONSE_BODY, size)
    }

    fn set_effective_context(&self, id: u32) -> Result<(), HostError> {
        // SAFETY: no memory is passed.
        result(unsafe { proxy_set_effective_context(id) })
    }

    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        let (mut data, mut size, mut cas) = (std::ptr::null_mut(), 0usize, 0u32);
        // SAFETY: as in `buffer`.
        unsafe {
            match proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) {
                OK => Ok((owned(data, size), (cas != 0).then_some(cas))),
                1 => Ok((None, None)),
                status => Err(HostError(status)),
            }
        }
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        // SAFETY: reads the buffers only.
        result(unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        })
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut id = 0u32;
        // SAFETY: reads the name, writes one u32.
        let status =
            unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) };
        (status == OK).then_some(id)
    }

    fn increment_metric(&self, id: u32, by: u64) {
        // SAFETY: no memory is passed.
        unsafe {
            proxy_increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        // SAFETY: no memory is passed.
        unsafe {
            proxy_record_metric(id, value);
        }
    }

    fn set_tick_period(&self, period: Duration) {
        // SAFETY: no memory is passed.
        unsafe {
            proxy_set_tick_period_milliseconds(
                u32::try_from(period.as_millis()).unwrap_or(u32::MAX),
            );
        }
    }
}
