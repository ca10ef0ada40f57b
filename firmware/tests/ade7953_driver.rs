//! ADE7953 driver against `embedded-hal-mock` SPI transaction lists (each ends with `done()`), and a
//! failing `SpiDevice` for error propagation.

use embedded_hal::spi::{ErrorKind, ErrorType, Operation, SpiDevice};
use embedded_hal_mock::eh1::spi::{Mock, Transaction as T};
use firmware::ade7953::{Ade7953, Calibration, Config, Error, period_to_hz};

fn with_mock<R>(
    cal: Calibration,
    expect: &[T<u8>],
    f: impl FnOnce(&mut Ade7953<Mock<u8>>) -> R,
) -> R {
    let mut dev = Ade7953::new(Mock::new(expect), cal);
    let r = f(&mut dev);
    dev.release().done();
    r
}

/// A register read: address MSB first, 0x80, then the response bytes.
fn read(addr: u16, resp: &[u8]) -> [T<u8>; 4] {
    let [h, l] = addr.to_be_bytes();
    [
        T::transaction_start(),
        T::write_vec(vec![h, l, 0x80]),
        T::read_vec(resp.to_vec()),
        T::transaction_end(),
    ]
}

/// A register write: address, 0x00, data.
fn write(bytes: &[u8]) -> [T<u8>; 3] {
    [
        T::transaction_start(),
        T::write_vec(bytes.to_vec()),
        T::transaction_end(),
    ]
}

#[test]
fn init_unlocks_then_writes_0x120_then_configures() {
    let mut e = Vec::new();
    e.extend(write(&[0x00, 0xFE, 0x00, 0xAD])); // unlock
    e.extend(write(&[0x01, 0x20, 0x00, 0x00, 0x30])); // 0x120 = 0x0030 (16-bit)
    e.extend(write(&[0x00, 0x04, 0x00, 0x40])); // LCYCMODE = RSTREAD
    e.extend(write(&[0x00, 0x07, 0x00, 0x00])); // PGA_V
    e.extend(write(&[0x00, 0x08, 0x00, 0x00])); // PGA_IA
    e.extend(write(&[0x01, 0x02, 0x00, 0x80, 0x04])); // CONFIG = 0x8004
    e.extend(read(0x102, &[0x80, 0x04])); // read back
    e.extend(read(0x702, &[0x02])); // VERSION
    let v = with_mock(Calibration::default(), &e, |d| {
        d.init(&Config::default()).unwrap()
    });
    assert_eq!(v, 2);
}

#[test]
fn config_readback_mismatch_is_an_error() {
    let mut e = Vec::new();
    e.extend(write(&[0x00, 0xFE, 0x00, 0xAD]));
    e.extend(write(&[0x01, 0x20, 0x00, 0x00, 0x30]));
    e.extend(write(&[0x00, 0x04, 0x00, 0x40]));
    e.extend(write(&[0x00, 0x07, 0x00, 0x00]));
    e.extend(write(&[0x00, 0x08, 0x00, 0x00]));
    e.extend(write(&[0x01, 0x02, 0x00, 0x80, 0x04]));
    e.extend(read(0x102, &[0xFF, 0xFF])); // MISO floating high: no chip
    let r = with_mock(Calibration::default(), &e, |d| d.init(&Config::default()));
    assert_eq!(
        r,
        Err(Error::Verify {
            register: 0x102,
            wrote: 0x8004,
            read: 0xFFFF
        })
    );
}

#[test]
fn scaled_readings_by_hand() {
    let cal = Calibration {
        v_per_lsb: 0.0001,
        a_per_lsb: 0.001,
        w_per_lsb: 0.5,
        var_per_lsb: 0.25,
        wh_per_lsb: 0.01,
    };
    let mut e = Vec::new();
    e.extend(read(0x31C, &[0x00, 0x23, 0x18, 0x60])); // VRMS 2_300_000 -> 230.0 V
    e.extend(read(0x31A, &[0x00, 0x00, 0x13, 0x88])); // IRMSA 5000 -> 5.0 A
    e.extend(read(0x312, &[0xFF, 0xFF, 0xFC, 0x18])); // AWATT -1000 -> -500 W
    e.extend(read(0x314, &[0x00, 0x00, 0x01, 0x90])); // AVAR 400 -> 100 var
    e.extend(read(0x10A, &[0x40, 0x00])); // PFA 0x4000 -> 0.5
    e.extend(read(0x10E, &[0x11, 0x7A])); // PERIOD 4474 -> 223750/4475 = 50.0 Hz
    let m = with_mock(cal, &e, |d| d.measure().unwrap());
    assert!((m.v_rms_v - 230.0).abs() < 1e-3, "{m:?}");
    assert!((m.i_rms_a - 5.0).abs() < 1e-5);
    assert_eq!(m.p_w, -500.0);
    assert_eq!(m.q_var, 100.0);
    assert_eq!(m.pf, 0.5);
    assert_eq!(m.freq_hz, 50.0);
    assert_eq!(period_to_hz(0xFFFF), 0.0);
}

#[test]
fn energy_is_accumulated_import_and_export() {
    let cal = Calibration {
        wh_per_lsb: 0.5,
        ..Calibration::default()
    };
    let mut e = Vec::new();
    e.extend(read(0x31E, &[0x00, 0x00, 0x03, 0xE8])); // +1000 LSB = 500 Wh
    e.extend(read(0x31E, &[0x00, 0x00, 0x07, 0xD0])); // +2000 LSB = 1000 Wh
    e.extend(read(0x31E, &[0xFF, 0xFF, 0xFF, 0x38])); // -200 LSB = -100 Wh export
    with_mock(cal, &e, |d| {
        assert_eq!(d.accumulate_energy().unwrap(), 500.0);
        assert_eq!(d.accumulate_energy().unwrap(), 1000.0);
        assert_eq!(d.accumulate_energy().unwrap(), -100.0);
        assert_eq!(d.import_energy_kwh(), 1.5);
        assert_eq!(d.export_energy_kwh(), 0.1);
    });
}

/// An SPI device whose every transaction fails.
struct Broken;
impl ErrorType for Broken {
    type Error = ErrorKind;
}
impl SpiDevice<u8> for Broken {
    fn transaction(&mut self, _: &mut [Operation<'_, u8>]) -> Result<(), ErrorKind> {
        Err(ErrorKind::ModeFault)
    }
}

#[test]
fn bus_errors_propagate_not_panic() {
    let mut d = Ade7953::new(Broken, Calibration::default());
    assert_eq!(
        d.init(&Config::default()),
        Err(Error::Bus(ErrorKind::ModeFault))
    );
    assert_eq!(d.measure(), Err(Error::Bus(ErrorKind::ModeFault)));
    assert_eq!(d.accumulate_energy(), Err(Error::Bus(ErrorKind::ModeFault)));
    assert_eq!(d.import_energy_kwh(), 0.0);
}
